"""The license registry: seeded from configs/licenses.yaml, looked up by identifier."""

from __future__ import annotations

from pathlib import Path

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from farm.audit.log import record_event
from farm.db.models import COMMERCIAL_USE, License
from farm.errors import InvalidInput
from farm.settings import CONFIGS_DIR

LICENSES_FILE = CONFIGS_DIR / "licenses.yaml"
_SEED_FIELDS = {
    "identifier", "name", "url", "commercial_use", "revenue_cap_usd", "attribution_required",
    "attribution_text", "use_restrictions", "derivatives_inherit", "text_sha256",
}


def _validated_entry(entry: object, where: str) -> dict:
    if not isinstance(entry, dict):
        raise InvalidInput(where, "each license must be a mapping")
    unknown = set(entry) - _SEED_FIELDS
    if unknown:
        raise InvalidInput(f"{where}.{sorted(unknown)[0]}", "is not a license field")
    for required in ("identifier", "name", "commercial_use"):
        if not entry.get(required):
            raise InvalidInput(f"{where}.{required}", "is required")
    if entry["commercial_use"] not in COMMERCIAL_USE:
        raise InvalidInput(f"{where}.commercial_use", f"must be one of {', '.join(COMMERCIAL_USE)}")
    from farm.licenses.admin import check_identifier, check_terms

    try:
        check_identifier(entry["identifier"])
        check_terms(entry)
    except InvalidInput as error:
        raise InvalidInput(f"{where}.{error.field}", error.message) from None
    return entry


def seed_licenses(session: Session, path: Path = LICENSES_FILE) -> int:
    """Add the licenses from `path` that the registry lacks; return how many were added."""
    entries = yaml.safe_load(path.read_text()) or []
    if not isinstance(entries, list):
        raise InvalidInput(str(path), "must be a list of licenses")
    existing = set(session.scalars(select(License.identifier)))
    added = 0
    for number, entry in enumerate(entries):
        entry = _validated_entry(entry, f"{path.name}[{number}]")
        if entry["identifier"] in existing:
            continue
        license_ = License(**entry)
        session.add(license_)
        session.flush()
        record_event(session, action="license.created", entity_type="license",
                     entity_id=license_.identifier, after=entry)
        existing.add(entry["identifier"])
        added += 1
    return added


def get_license(session: Session, identifier: str) -> License:
    license_ = session.scalar(select(License).where(License.identifier == identifier))
    if license_ is None:
        known = ", ".join(session.scalars(select(License.identifier).order_by(License.identifier)))
        raise InvalidInput("license", f"unknown license '{identifier}'; known: {known}")
    return license_
