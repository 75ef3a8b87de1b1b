"""A campaign's approved assets as a ZIP: the images and a manifest (CSV and JSON).

    images/<asset id>_<channel format>_<seed>.png   the PNGs as rendered (parameters inside)
    manifest.csv, manifest.json                     one row per image: file, format, size,
                                                    prompt, seed, model, model sha256, license,
                                                    approvals, parent asset, version, and its
                                                    license chain: licenses, attributions, use
                                                    restrictions to pass on
    LICENSES.txt                                    each license of the export once: its models,
                                                    the attributions its images must show, the
                                                    restrictions to pass on; withheld assets

License terms come from the chain each asset keeps (`assets.license_chain`: every model of the
chain under the license it was rendered under, carried base terms included). An asset made before
chains were kept gets its model's license as registered now, and the manifest says so
(`license_chain_source`: "registry" instead of "render").

An approved asset flagged for re-review (a model of its chain was suspended, or its license or
the license's terms changed, after the asset was made) is left out: its approval was given under
terms that no longer hold, so delivering it could pass on an image whose use is now refused. The
rest of the campaign still exports; manifest.json (`withheld`) and LICENSES.txt name each one left
out and why, so nothing disappears silently. A reviewer's new decision clears the flag
(farm.review.service), after which it exports again. When every approved asset is flagged, the
export is refused naming the field `campaign`.

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
from dataclasses import dataclass, field
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
    "license_chain", "licenses", "attributions", "use_restrictions",
)
LICENSES_FILE = "LICENSES.txt"
# How the CSV joins the several values of one cell (the JSON keeps lists).
CSV_LIST_SEPARATOR = " | "


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
    # Approved assets left out because they are flagged for re-review: {asset_id, reason}.
    withheld: list[dict[str, Any]] = field(default_factory=list)


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


def _license_chain(asset: Asset, model: RegisteredModel, license_: License) -> tuple[list[dict[str, Any]], str]:
    """The asset's chain as kept at render time, or its model's license now (and which it is)."""
    if asset.license_chain:
        return [dict(entry) for entry in asset.license_chain], "render"
    return [{"model": model.name, "kind": model.kind, "sha256": model.sha256, "license": license_.identifier,
             "license_name": license_.name, "url": license_.url, "commercial_use": license_.commercial_use,
             "via": None, "attribution": license_.attribution_text if license_.attribution_required else None,
             "use_restrictions": list(license_.use_restrictions or [])}], "registry"


def _unique(values) -> list[Any]:
    return list(dict.fromkeys(value for value in values if value))


def export_campaign(session: Session, storage: ObjectStorage, user: User, campaign_id: int,
                    out: IO[bytes]) -> ExportSummary:
    """Write the ZIP of the campaign's approved assets to `out`; audited as campaign.exported.

    NotFound for a campaign the user cannot see; InvalidInput("campaign", ...) when it has no
    approved asset, or when every approved asset is flagged for re-review; ExportFailed when a
    stored image is missing or not what its row says.
    """
    campaign = require_visible_campaign(session, user, campaign_id)
    rows = session.execute(
        select(Asset, Render.params, RegisteredModel, License)
        .join(Render, Render.id == Asset.render_id)
        .join(RegisteredModel, RegisteredModel.id == Asset.model_id)
        .join(License, License.id == RegisteredModel.license_id)
        .where(Asset.campaign_id == campaign.id, Asset.approval_state == "approved")
        .order_by(Asset.id)
    ).all()
    if not rows:
        raise InvalidInput("campaign", f"campaign '{campaign.name}' has no approved assets to export")
    withheld = [{"asset_id": asset.id, "reason": asset.rereview_reason or "flagged for re-review"}
                for asset, _, _, _ in rows if asset.needs_rereview]
    rows = [row for row in rows if not row[0].needs_rereview]
    if not rows:
        raise InvalidInput("campaign", f"every approved asset of campaign '{campaign.name}' ({len(withheld)}) is "
                                       "flagged for re-review (a model of its chain was suspended or changed "
                                       "license); a reviewer must decide on them again before they can be exported")
    approvals = _current_approvals(session, campaign.id)
    exported_at = utcnow()

    manifest: list[dict[str, Any]] = []
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for asset, params, model, license_ in rows:
            name = _image_name(asset, params.get("seed"))
            png = storage.get(asset.storage_key)
            if hashlib.sha256(png).hexdigest() != asset.sha256:
                raise ExportFailed(f"asset {asset.id}: the stored image {asset.storage_key} does not match its sha256")
            # PNGs are compressed already: store them as they are.
            archive.writestr(_entry(name, exported_at), png, compress_type=zipfile.ZIP_STORED)
            chain, source = _license_chain(asset, model, license_)
            manifest.append({
                "file": name, "asset_id": asset.id, "channel_format": asset.channel_format,
                "width": asset.width, "height": asset.height, "prompt": params.get("prompt", ""),
                "negative_prompt": params.get("negative_prompt", ""), "seed": params.get("seed"),
                "model": model.name, "model_sha256": model.sha256, "license": license_.identifier,
                "approvals": [{"reviewer": a.reviewer, "approved_at": _iso(a.approved_at)}
                              for a in approvals.get(asset.id, [])],
                "parent_asset_id": asset.parent_asset_id, "version": asset.version, "sha256": asset.sha256,
                "license_chain": chain, "license_chain_source": source,
                "licenses": _unique(entry.get("license") for entry in chain),
                "attributions": _unique(entry.get("attribution") for entry in chain),
                "use_restrictions": _unique(r for entry in chain for r in entry.get("use_restrictions") or []),
            })
        archive.writestr(_entry("manifest.csv", exported_at), _manifest_csv(manifest))
        archive.writestr(_entry("manifest.json", exported_at), json.dumps({
            "campaign": {"id": campaign.id, "name": campaign.name, "brand": campaign.brand,
                         "commercial_use": campaign.commercial_use},
            "exported_at": _iso(exported_at), "exported_by": user.name, "columns": list(MANIFEST_COLUMNS),
            "assets": manifest, "withheld": withheld,
        }, indent=2, ensure_ascii=False))
        archive.writestr(_entry(LICENSES_FILE, exported_at),
                         licenses_text(campaign, user.name, exported_at, manifest, withheld))

    files = [row["file"] for row in manifest]
    record_event(session, action="campaign.exported", entity_type="campaign", entity_id=campaign.id, actor=user,
                 after={"assets": len(manifest), "asset_ids": [row["asset_id"] for row in manifest],
                        "licenses": _unique(identifier for row in manifest for identifier in row["licenses"]),
                        "withheld_asset_ids": [entry["asset_id"] for entry in withheld]})
    return ExportSummary(campaign_id=campaign.id, campaign_name=campaign.name, assets=len(manifest), files=files,
                         filename=export_filename(campaign, exported_at), withheld=withheld)


def licenses_text(campaign: Campaign, exported_by: str, exported_at: datetime, manifest: list[dict[str, Any]],
                  withheld: list[dict[str, Any]]) -> str:
    """LICENSES.txt: every license of the export once, what it asks of whoever uses the images."""
    licenses: dict[str, dict[str, Any]] = {}
    for row in manifest:
        for entry in row["license_chain"]:
            line = licenses.setdefault(entry["license"], {
                "name": entry.get("license_name"), "url": entry.get("url"), "models": {}, "files": set(),
                "attributions": {}, "restrictions": {}})
            line["name"] = line["name"] or entry.get("license_name")
            line["url"] = line["url"] or entry.get("url")
            model = f"{entry['model']} ({entry.get('kind') or 'model'}, sha256 {entry.get('sha256') or '?'})"
            if entry.get("via"):
                model += f", the base of {entry['via']}: its terms carry over"
            line["models"][model] = None
            line["files"].add(row["file"])
            if entry.get("attribution"):
                line["attributions"][entry["attribution"]] = None
            for restriction in entry.get("use_restrictions") or []:
                line["restrictions"][restriction] = None
    out = [
        "Licenses of the images in this export",
        f"Campaign: {campaign.name} (id {campaign.id}, brand {campaign.brand}, "
        f"{'commercial' if campaign.commercial_use else 'non-commercial'} use)",
        f"Exported {_iso(exported_at)} by {exported_by}: {len(manifest)} image(s)",
        "",
        "The images were made with AI models under the licenses below. Whoever receives or uses them",
        "must show the attributions listed and is bound by the use restrictions listed: pass both on",
        "to anyone you give the images to. manifest.csv and manifest.json say, for each image, which",
        "models and licenses made it (columns license_chain, licenses, attributions, use_restrictions).",
        "The license texts at the URLs given are what binds; these are summaries.",
    ]
    attributions = _unique(a for line in licenses.values() for a in line["attributions"])
    if attributions:
        out += ["", "Attributions to show with the images:"]
        out += [f"  - {text}" for text in attributions]
    for identifier in sorted(licenses):
        line = licenses[identifier]
        out += ["", "=" * 78, f"{identifier}" + (f": {line['name']}" if line["name"] else "")]
        if line["url"]:
            out.append(f"Text: {line['url']}")
        out.append(f"Images: {len(line['files'])} of {len(manifest)}")
        out.append("Models:")
        out += [f"  - {model}" for model in line["models"]]
        if line["attributions"]:
            out.append("Attribution required:")
            out += [f"  - {text}" for text in line["attributions"]]
        else:
            out.append("Attribution required: no")
        if line["restrictions"]:
            out.append("Use restrictions to pass on:")
            out += [f"  - {text}" for text in line["restrictions"]]
        else:
            out.append("Use restrictions to pass on: none")
    if withheld:
        out += ["", "=" * 78, f"Withheld: {len(withheld)} approved asset(s) left out, flagged for re-review",
                "(a model of their chain was suspended or changed license after they were made; a reviewer",
                "must decide on them again):"]
        out += [f"  - asset {entry['asset_id']}: {entry['reason']}" for entry in withheld]
    return "\n".join(out) + "\n"


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
        row = {key: value for key, value in row.items() if key in MANIFEST_COLUMNS}
        chain = "; ".join(
            f"{entry['model']} [{(entry.get('sha256') or '')[:10]}] {entry['license']}"
            + (f" (base of {entry['via']})" if entry.get("via") else "") for entry in row["license_chain"])
        writer.writerow({**row, "prompt": _cell(row["prompt"]), "negative_prompt": _cell(row["negative_prompt"]),
                         "license_chain": _cell(chain), "licenses": CSV_LIST_SEPARATOR.join(row["licenses"]),
                         "attributions": _cell(CSV_LIST_SEPARATOR.join(row["attributions"])),
                         "use_restrictions": _cell(CSV_LIST_SEPARATOR.join(row["use_restrictions"])),
                         "approvals": "; ".join(f"{a['reviewer']} {a['approved_at']}" for a in row["approvals"]),
                         "channel_format": row["channel_format"] or "",
                         "parent_asset_id": "" if row["parent_asset_id"] is None else row["parent_asset_id"]})
    return buffer.getvalue()


def _cell(text: str) -> str:
    """Text a spreadsheet will show, not evaluate (OWASP's advice on CSV injection)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
