"""A campaign's approved assets as a ZIP: the images and a manifest (CSV and JSON).

    images/<asset id>_<channel format>_<seed>.png   the PNGs as rendered (parameters inside)
    manifest.csv, manifest.json                     one row per image: file, format, size,
                                                    prompt, seed, model, model sha256, license,
                                                    approvals, parent asset, version

Images are copied one at a time from the object store into the archive and checked against
the sha256 the asset row records, so memory holds one image, never the whole export, and a
corrupted or swapped object stops the export instead of being delivered. The archive may be
written to an unseekable stream (an HTTP response): zipfile then writes data descriptors.

manifest.json holds the values exactly. In manifest.csv, which people open in spreadsheets, a
prompt that starts with = + - @ or a tab is prefixed with ' so that it is never run as a formula.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from farm.audit.log import record_event
from farm.campaigns.access import require_visible_campaign
from farm.db.base import utcnow
from farm.db.models import Asset, Campaign, License, RegisteredModel, Render, Review, User
from farm.errors import FarmError, InvalidInput
from farm.storage import ObjectStorage

MANIFEST_COLUMNS = (
    "file", "asset_id", "channel_format", "width", "height", "prompt", "negative_prompt", "seed",
    "model", "model_sha256", "license", "approvals", "parent_asset_id", "version", "sha256",
)


class ExportFailed(FarmError):
    """The export could not be completed (an image is missing or does not match its record)."""


@dataclass(frozen=True)
class Approval:
    reviewer: str
    approved_at: datetime


@dataclass(frozen=True)
class ExportSummary:
    campaign_id: int
    campaign_name: str
    assets: int
    files: list[str]
    filename: str  # a name to offer for the download


def export_filename(campaign: Campaign, when: datetime) -> str:
    return f"{_safe(campaign.name) or 'campaign'}-{campaign.id}-approved-{when:%Y%m%dT%H%M%SZ}.zip"


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")


def _image_name(asset: Asset, seed: Any) -> str:
    channel = _safe(asset.channel_format or "") or f"{asset.width}x{asset.height}"
    return f"images/{asset.id}_{channel}_{seed}.png"


def _current_approvals(session: Session, campaign_id: int) -> dict[int, list[Approval]]:
    """For each approved asset, the approvals since its last other decision: who made it approved."""
    rows = session.execute(
        select(Review.asset_id, Review.decision, User.name, Review.created_at)
        .join(User, User.id == Review.reviewer_id)
        .join(Asset, Asset.id == Review.asset_id)
        .where(Asset.campaign_id == campaign_id, Asset.approval_state == "approved")
        .order_by(Review.asset_id, Review.created_at, Review.id)
    ).all()
    approvals: dict[int, list[Approval]] = {}
    for asset_id, decision, reviewer, created_at in rows:
        entries = approvals.setdefault(asset_id, [])
        if decision == "approve":
            entries.append(Approval(reviewer, created_at))
        else:
            entries.clear()
    return approvals


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def export_campaign(session: Session, storage: ObjectStorage, user: User, campaign_id: int,
                    out: IO[bytes]) -> ExportSummary:
    """Write the ZIP of the campaign's approved assets to `out`; audited as campaign.exported.

    NotFound for a campaign the user cannot see; InvalidInput("campaign", ...) when it has no
    approved asset; ExportFailed when a stored image is missing or not what its row says.
    """
    campaign = require_visible_campaign(session, user, campaign_id)
    rows = session.execute(
        select(Asset, Render.params, RegisteredModel.name, RegisteredModel.sha256, License.identifier)
        .join(Render, Render.id == Asset.render_id)
        .join(RegisteredModel, RegisteredModel.id == Asset.model_id)
        .join(License, License.id == RegisteredModel.license_id)
        .where(Asset.campaign_id == campaign.id, Asset.approval_state == "approved")
        .order_by(Asset.id)
    ).all()
    if not rows:
        raise InvalidInput("campaign", f"campaign '{campaign.name}' has no approved assets to export")
    approvals = _current_approvals(session, campaign.id)
    exported_at = utcnow()

    manifest: list[dict[str, Any]] = []
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for asset, params, model_name, model_sha256, license_identifier in rows:
            name = _image_name(asset, params.get("seed"))
            png = storage.get(asset.storage_key)
            if hashlib.sha256(png).hexdigest() != asset.sha256:
                raise ExportFailed(f"asset {asset.id}: the stored image {asset.storage_key} does not match its sha256")
            # PNGs are compressed already: store them as they are.
            archive.writestr(_entry(name, exported_at), png, compress_type=zipfile.ZIP_STORED)
            manifest.append({
                "file": name, "asset_id": asset.id, "channel_format": asset.channel_format,
                "width": asset.width, "height": asset.height, "prompt": params.get("prompt", ""),
                "negative_prompt": params.get("negative_prompt", ""), "seed": params.get("seed"),
                "model": model_name, "model_sha256": model_sha256, "license": license_identifier,
                "approvals": [{"reviewer": a.reviewer, "approved_at": _iso(a.approved_at)}
                              for a in approvals.get(asset.id, [])],
                "parent_asset_id": asset.parent_asset_id, "version": asset.version, "sha256": asset.sha256,
            })
        archive.writestr(_entry("manifest.csv", exported_at), _manifest_csv(manifest))
        archive.writestr(_entry("manifest.json", exported_at), json.dumps({
            "campaign": {"id": campaign.id, "name": campaign.name, "brand": campaign.brand},
            "exported_at": _iso(exported_at), "exported_by": user.name, "columns": list(MANIFEST_COLUMNS),
            "assets": manifest,
        }, indent=2, ensure_ascii=False))

    files = [row["file"] for row in manifest]
    record_event(session, action="campaign.exported", entity_type="campaign", entity_id=campaign.id, actor=user,
                 after={"assets": len(manifest), "asset_ids": [row["asset_id"] for row in manifest]})
    return ExportSummary(campaign_id=campaign.id, campaign_name=campaign.name, assets=len(manifest), files=files,
                         filename=export_filename(campaign, exported_at))


def _entry(name: str, when: datetime) -> zipfile.ZipInfo:
    entry = zipfile.ZipInfo(name, date_time=when.astimezone(timezone.utc).timetuple()[:6])
    entry.compress_type = zipfile.ZIP_DEFLATED
    entry.external_attr = 0o644 << 16
    return entry


def _manifest_csv(manifest: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=MANIFEST_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    for row in manifest:
        writer.writerow({**row, "prompt": _cell(row["prompt"]), "negative_prompt": _cell(row["negative_prompt"]),
                         "approvals": "; ".join(f"{a['reviewer']} {a['approved_at']}" for a in row["approvals"]),
                         "channel_format": row["channel_format"] or "",
                         "parent_asset_id": "" if row["parent_asset_id"] is None else row["parent_asset_id"]})
    return buffer.getvalue()


def _cell(text: str) -> str:
    """Text a spreadsheet will show, not evaluate (OWASP's advice on CSV injection)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
