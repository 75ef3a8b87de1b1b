"""Administering the license registry: list, show, add, edit. Every change is audited with its
before and after.

An identifier is an SPDX short identifier where one exists (`Apache-2.0`,
`CreativeML-OpenRAIL-M`) or `LicenseRef-` and letters, digits, '.' and '-' (SPDX's form for
licenses it does not list). Editing terms the policy reads (commercial use, revenue cap,
attribution, restrictions, inheritance) raises the policy version of every model under the
license, so workers re-check renders with the new terms, and flags the assets those models made
for re-review: they were made under the old terms.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from farm.audit.log import record_event
from farm.db.base import utcnow
from farm.db.models import COMMERCIAL_USE, License, RegisteredModel, User
from farm.errors import InvalidInput
from farm.licenses.policy import bump_policy_versions
from farm.licenses.registry import get_license

# SPDX: idstring = 1*(ALPHA / DIGIT / "-" / "."); a listed license may end in "+" (or later).
SPDX_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9.\-]*\+?")
LICENSE_REF = re.compile(r"LicenseRef-[A-Za-z0-9.\-]+")
IDENTIFIER_MAX_LENGTH = 100
NAME_MAX_LENGTH = 200
URL_MAX_LENGTH = 500
TEXT_MAX_LENGTH = 2000
MAX_RESTRICTIONS = 50
EDITABLE_FIELDS = ("name", "url", "text_sha256", "commercial_use", "revenue_cap_usd", "attribution_required",
                   "attribution_text", "use_restrictions", "derivatives_inherit")
# Fields whose change changes what the policy decides or what an asset's users must do.
POLICY_FIELDS = ("commercial_use", "revenue_cap_usd", "attribution_required", "attribution_text",
                 "use_restrictions", "derivatives_inherit")


@dataclass(frozen=True)
class LicenseInfo:
    identifier: str
    name: str
    url: str | None
    text_sha256: str | None
    commercial_use: str
    revenue_cap_usd: int | None
    attribution_required: bool
    attribution_text: str | None
    use_restrictions: list[str]
    derivatives_inherit: bool
    models: int
    created_at: datetime
    updated_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_identifier(identifier: object) -> str:
    if not isinstance(identifier, str) or not identifier.strip():
        raise InvalidInput("identifier", "is required")
    identifier = identifier.strip()
    if len(identifier) > IDENTIFIER_MAX_LENGTH:
        raise InvalidInput("identifier", f"must be at most {IDENTIFIER_MAX_LENGTH} characters")
    if identifier.lower().startswith("licenseref-"):
        if not LICENSE_REF.fullmatch(identifier):
            raise InvalidInput("identifier", f"'{identifier}' is not LicenseRef- followed by letters, digits, "
                                             "'.' or '-'")
        return identifier
    if identifier.lower().startswith(("documentref-", "additionref-")) or not SPDX_IDENTIFIER.fullmatch(identifier):
        raise InvalidInput("identifier", f"'{identifier}' is neither an SPDX identifier (letters, digits, '.', "
                                         "'-') nor LicenseRef-...")
    return identifier


def _text(value: object, field: str, limit: int, required: bool = False) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise InvalidInput(field, "is required")
        return None
    if not isinstance(value, str):
        raise InvalidInput(field, "must be text")
    value = value.strip()
    if len(value) > limit:
        raise InvalidInput(field, f"must be at most {limit} characters")
    return value


def _bool(value: object, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "false", "no", "0"):
        return value.strip().lower() in ("true", "yes", "1")
    raise InvalidInput(field, f"must be true or false, got {value!r}")


def _checked(field: str, value: object) -> Any:
    if field == "name":
        return _text(value, field, NAME_MAX_LENGTH, required=True)
    if field == "url":
        url = _text(value, field, URL_MAX_LENGTH)
        if url is not None and not re.fullmatch(r"https?://\S+", url):
            raise InvalidInput(field, f"'{url}' is not an http(s) URL")
        return url
    if field == "text_sha256":
        digest = _text(value, field, 64)
        if digest is not None and not re.fullmatch(r"[0-9a-f]{64}", digest.lower()):
            raise InvalidInput(field, "must be 64 hex digits (the sha256 of the license text)")
        return digest.lower() if digest else None
    if field == "commercial_use":
        if value not in COMMERCIAL_USE:
            raise InvalidInput(field, f"must be one of {', '.join(COMMERCIAL_USE)}")
        return value
    if field == "revenue_cap_usd":
        if value is None or value == "":
            return None
        if isinstance(value, str) and value.strip().replace("_", "").replace(",", "").isdigit():
            value = int(value.strip().replace("_", "").replace(",", ""))
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise InvalidInput(field, f"must be a whole number of US dollars above 0, got {value!r}")
        return value
    if field in ("attribution_required", "derivatives_inherit"):
        return _bool(value, field)
    if field == "attribution_text":
        return _text(value, field, TEXT_MAX_LENGTH)
    if field == "use_restrictions":
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise InvalidInput(field, "must be a list of texts")
        if len(value) > MAX_RESTRICTIONS:
            raise InvalidInput(field, f"at most {MAX_RESTRICTIONS} restrictions")
        return [_text(item, f"{field}[{index}]", TEXT_MAX_LENGTH, required=True) for index, item in enumerate(value)]
    raise InvalidInput(field, "is not a license field")


def _consistent(values: Mapping[str, Any]) -> None:
    if values.get("commercial_use") == "revenue_capped" and not values.get("revenue_cap_usd"):
        raise InvalidInput("revenue_cap_usd", "is required for a revenue-capped license")
    if values.get("commercial_use") != "revenue_capped" and values.get("revenue_cap_usd"):
        raise InvalidInput("revenue_cap_usd", "only a revenue-capped license has a revenue cap")
    if values.get("attribution_required") and not values.get("attribution_text"):
        raise InvalidInput("attribution_text", "is required when attribution is required (the text to show)")


def check_terms(values: Mapping[str, Any]) -> None:
    """The checks every license's terms pass, in the seed file too; InvalidInput names the field."""
    for field, value in values.items():
        if field in EDITABLE_FIELDS:
            _checked(field, value)
    _consistent(values)


def text_sha256_of(path: Path | str) -> str:
    """The sha256 of a license text file (for `text_sha256`)."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError as error:
        raise InvalidInput("text", f"cannot read {path}: {error.strerror or error}") from None


def _values(license_: License) -> dict[str, Any]:
    return {field: getattr(license_, field) for field in EDITABLE_FIELDS}


def license_info(session: Session, license_: License) -> LicenseInfo:
    models = session.scalar(select(func.count(RegisteredModel.id)).where(RegisteredModel.license_id == license_.id))
    return LicenseInfo(identifier=license_.identifier, models=models, created_at=license_.created_at,
                       updated_at=license_.updated_at,
                       **{**_values(license_), "use_restrictions": list(license_.use_restrictions or [])})


def list_licenses(session: Session) -> list[LicenseInfo]:
    return [license_info(session, license_) for license_ in session.scalars(select(License).order_by(License.identifier))]


def show_license(session: Session, identifier: str) -> LicenseInfo:
    return license_info(session, get_license(session, identifier))


def create_license(session: Session, actor: User | None, fields: Mapping[str, Any]) -> LicenseInfo:
    """Add a license; `fields` has `identifier`, `name`, `commercial_use` and any of EDITABLE_FIELDS."""
    unknown = sorted(set(fields) - {"identifier", *EDITABLE_FIELDS})
    if unknown:
        raise InvalidInput(unknown[0], "is not a license field")
    identifier = check_identifier(fields.get("identifier"))
    values = {"attribution_required": False, "use_restrictions": [], "derivatives_inherit": True,
              **{field: _checked(field, value) for field, value in fields.items() if field != "identifier"}}
    for required in ("name", "commercial_use"):
        if values.get(required) is None:
            raise InvalidInput(required, "is required")
    _consistent(values)
    if session.scalar(select(License.id).where(func.lower(License.identifier) == identifier.lower())):
        raise InvalidInput("identifier", f"license '{identifier}' exists already; edit it instead")
    license_ = License(identifier=identifier, **values)
    session.add(license_)
    session.flush()
    record_event(session, action="license.created", entity_type="license", entity_id=identifier, actor=actor,
                 after={"identifier": identifier, **_values(license_)})
    return license_info(session, license_)


def update_license(session: Session, actor: User | None, identifier: str, changes: Mapping[str, Any],
                   reason: str | None = None) -> LicenseInfo:
    """Change any of EDITABLE_FIELDS; only fields whose value changes are written and audited."""
    license_ = get_license(session, identifier)
    unknown = sorted(set(changes) - set(EDITABLE_FIELDS))
    if unknown:
        raise InvalidInput(unknown[0], "is not a license field that can be changed" if unknown[0] != "identifier"
                           else "cannot be changed (models and assets refer to it); add a new license instead")
    checked = {field: _checked(field, value) for field, value in changes.items()}
    before = _values(license_)
    after = {**before, **checked}
    _consistent(after)
    fields = [field for field in EDITABLE_FIELDS if before[field] != after[field]]
    if not fields:
        return license_info(session, license_)
    for field in fields:
        setattr(license_, field, after[field])
    license_.updated_at = utcnow()
    session.flush()
    extra: dict[str, Any] = {}
    if any(field in POLICY_FIELDS for field in fields):
        models = list(session.scalars(select(RegisteredModel).where(RegisteredModel.license_id == license_.id)))
        bump_policy_versions(session, [model.id for model in models])
        from farm.models.admin import flag_assets_of_models

        extra["flagged_assets"] = flag_assets_of_models(
            session, models, f"terms of license {license_.identifier} changed ({', '.join(fields)})"
            + (f": {reason.strip()}" if reason else ""))
        extra["models"] = sorted(model.name for model in models)
    record_event(session, action="license.updated", entity_type="license", entity_id=license_.identifier,
                 actor=actor, before={field: before[field] for field in fields},
                 after={**{field: after[field] for field in fields}, **extra, "reason": reason})
    return license_info(session, license_)
