"""What license auditors read: usage per model and per license, a campaign's license report, the
policy's refusals, and the audit log itself for a date range (CSV or JSON).

Usage is counted from assets and the license chain each one keeps (`assets.license_chain`: every
model of the chain, with the license it was rendered under, carried base terms included), so a
report says what was true when the image was made even if a license changed since. Assets made
before license chains existed count under their model's license as registered now, and say so.

Every function takes an optional date range (`since`, `until`: dates, both inclusive, in UTC)
and returns JSON-friendly dataclasses (`to_dict()`); the dashboard's auditor pages call them.
Pending render events are written to the log first (farm.audit.renders), so the log is complete.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Iterator

from sqlalchemy import select
from sqlalchemy.orm import Session

from farm.audit.log import chain_head
from farm.db.models import Asset, AuditEvent, Campaign, License, RegisteredModel
from farm.errors import InvalidInput
from farm.models.hashing import short_hash

EXPORT_FORMATS = ("csv", "json")
EXPORT_COLUMNS = ("id", "occurred_at", "actor_id", "actor_name", "action", "entity_type", "entity_id",
                  "before", "after", "prev_hash", "hash")
_BATCH = 2000


# -- date ranges ------------------------------------------------------------------------------------

def parse_date(value: object, field: str) -> date | None:
    """A YYYY-MM-DD date (or a date), None for empty; InvalidInput(field) otherwise."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise InvalidInput(field, f"'{value}' is not a date (YYYY-MM-DD)") from None


def _bounds(since: object, until: object) -> tuple[datetime | None, datetime | None]:
    start, end = parse_date(since, "from"), parse_date(until, "to")
    if start and end and end < start:
        raise InvalidInput("to", f"{end} is before --from {start}")
    return (datetime.combine(start, time.min, timezone.utc) if start else None,
            datetime.combine(end + timedelta(days=1), time.min, timezone.utc) if end else None)


def _in_range(column, since: object, until: object) -> list:
    start, end = _bounds(since, until)
    conditions = []
    if start is not None:
        conditions.append(column >= start)
    if end is not None:
        conditions.append(column < end)
    return conditions


def _seal(session: Session) -> None:
    """Write pending render events first, in the caller's transaction."""
    from farm.audit.renders import seal_batch

    while seal_batch(session) > 0:
        pass


# -- the chains of assets -------------------------------------------------------------------------

@dataclass(frozen=True)
class _AssetChain:
    asset_id: int
    campaign_id: int
    approved: bool
    needs_rereview: bool
    created_at: datetime
    entries: list[dict[str, Any]]  # {model, kind, sha256, license, via, attribution, use_restrictions}
    from_registry: bool           # True: the asset predates license chains; its model's license now


def _asset_chains(session: Session, since: object, until: object, campaign_id: int | None = None
                  ) -> Iterator[_AssetChain]:
    models = {m.id: m for m in session.scalars(select(RegisteredModel))}
    query = (select(Asset.id, Asset.campaign_id, Asset.approval_state, Asset.needs_rereview, Asset.created_at,
                    Asset.license_chain, Asset.model_id)
             .where(*_in_range(Asset.created_at, since, until)).order_by(Asset.id)
             .execution_options(yield_per=_BATCH))
    if campaign_id is not None:
        query = query.where(Asset.campaign_id == campaign_id)
    for row in session.execute(query):
        entries = row.license_chain
        from_registry = entries is None
        if from_registry:
            model = models[row.model_id]
            license_ = model.license
            entries = [{"model": model.name, "kind": model.kind, "sha256": model.sha256,
                        "license": license_.identifier, "via": None,
                        "attribution": license_.attribution_text if license_.attribution_required else None,
                        "use_restrictions": list(license_.use_restrictions or [])}]
        yield _AssetChain(asset_id=row.id, campaign_id=row.campaign_id, approved=row.approval_state == "approved",
                          needs_rereview=row.needs_rereview, created_at=row.created_at, entries=entries,
                          from_registry=from_registry)


# -- per model ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelUsage:
    model: str
    kind: str
    sha256: str
    short_hash: str
    status: str
    license: str                     # as registered now
    rendered_under: list[str]        # licenses its assets were made under (carried terms included)
    assets: int
    approved_assets: int
    assets_needing_rereview: int
    campaigns: int
    commercial_campaigns: int
    first_asset_at: datetime | None
    last_asset_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def model_usage(session: Session, since: object = None, until: object = None) -> list[ModelUsage]:
    """Every registered model: how many assets it helped make (in its chain, as a carried base
    too), approved, flagged; in how many (commercial) campaigns; under which licenses."""
    _seal(session)
    commercial = dict(session.execute(select(Campaign.id, Campaign.commercial_use)).all())
    stats: dict[str, dict[str, Any]] = defaultdict(lambda: {"assets": 0, "approved": 0, "rereview": 0,
                                                            "campaigns": set(), "licenses": set(),
                                                            "first": None, "last": None})
    for chain in _asset_chains(session, since, until):
        for sha in {entry["sha256"]: entry for entry in chain.entries}.values():
            s = stats[sha["sha256"]]
            s["assets"] += 1
            s["approved"] += chain.approved
            s["rereview"] += chain.needs_rereview
            s["campaigns"].add(chain.campaign_id)
            s["licenses"].add(sha["license"])
            s["first"] = min(filter(None, (s["first"], chain.created_at)))
            s["last"] = max(filter(None, (s["last"], chain.created_at)))
    rows = []
    for model in session.scalars(select(RegisteredModel).order_by(RegisteredModel.kind, RegisteredModel.name)):
        s = stats.get(model.sha256) or stats.default_factory()
        rows.append(ModelUsage(
            model=model.name, kind=model.kind, sha256=model.sha256, short_hash=short_hash(model.sha256),
            status=model.status, license=model.license.identifier, rendered_under=sorted(s["licenses"]),
            assets=s["assets"], approved_assets=s["approved"], assets_needing_rereview=s["rereview"],
            campaigns=len(s["campaigns"]), commercial_campaigns=sum(1 for c in s["campaigns"] if commercial.get(c)),
            first_asset_at=s["first"], last_asset_at=s["last"]))
    return rows


# -- per license --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LicenseUsage:
    license: str
    name: str
    commercial_use: str
    models_registered: list[str]     # under this license now
    models_rendered: list[str]       # whose assets were made under it (carried terms included)
    assets: int
    approved_assets: int
    campaigns: int
    commercial_campaigns: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def license_usage(session: Session, since: object = None, until: object = None) -> list[LicenseUsage]:
    _seal(session)
    commercial = dict(session.execute(select(Campaign.id, Campaign.commercial_use)).all())
    stats: dict[str, dict[str, Any]] = defaultdict(lambda: {"assets": 0, "approved": 0, "campaigns": set(),
                                                            "models": set()})
    for chain in _asset_chains(session, since, until):
        by_license: dict[str, set[str]] = defaultdict(set)
        for entry in chain.entries:
            by_license[entry["license"]].add(entry["model"])
        for identifier, models in by_license.items():
            s = stats[identifier]
            s["assets"] += 1
            s["approved"] += chain.approved
            s["campaigns"].add(chain.campaign_id)
            s["models"] |= models
    registered: dict[int, list[str]] = defaultdict(list)
    for model in session.scalars(select(RegisteredModel).order_by(RegisteredModel.name)):
        registered[model.license_id].append(model.name)
    rows = []
    for license_ in session.scalars(select(License).order_by(License.identifier)):
        s = stats.get(license_.identifier) or stats.default_factory()
        rows.append(LicenseUsage(
            license=license_.identifier, name=license_.name, commercial_use=license_.commercial_use,
            models_registered=registered.get(license_.id, []), models_rendered=sorted(s["models"]),
            assets=s["assets"], approved_assets=s["approved"], campaigns=len(s["campaigns"]),
            commercial_campaigns=sum(1 for c in s["campaigns"] if commercial.get(c))))
    return rows


# -- per campaign ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CampaignLicenseLine:
    license: str
    models: list[str]
    assets: int
    approved_assets: int
    attributions: list[str]          # texts the campaign's images must show
    use_restrictions: list[str]      # terms to pass on to whoever receives them

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CampaignLicenseReport:
    campaign: str
    campaign_id: int
    commercial: bool
    assets: int
    approved_assets: int
    assets_needing_rereview: int
    assets_predating_license_chains: int
    licenses: list[CampaignLicenseLine]
    refusals: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def campaign_license_report(session: Session, campaign_id: int, since: object = None,
                            until: object = None) -> CampaignLicenseReport:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise InvalidInput("campaign", f"no campaign {campaign_id}")
    _seal(session)
    lines: dict[str, dict[str, Any]] = defaultdict(lambda: {"models": set(), "assets": 0, "approved": 0,
                                                            "attributions": {}, "restrictions": {}})
    totals = {"assets": 0, "approved": 0, "rereview": 0, "legacy": 0}
    for chain in _asset_chains(session, since, until, campaign_id=campaign.id):
        totals["assets"] += 1
        totals["approved"] += chain.approved
        totals["rereview"] += chain.needs_rereview
        totals["legacy"] += chain.from_registry
        counted: set[str] = set()
        for entry in chain.entries:
            line = lines[entry["license"]]
            line["models"].add(entry["model"])
            if entry["license"] not in counted:
                counted.add(entry["license"])
                line["assets"] += 1
                line["approved"] += chain.approved
            if entry.get("attribution"):
                line["attributions"][entry["attribution"]] = None
            for restriction in entry.get("use_restrictions") or []:
                line["restrictions"][restriction] = None
    refusals = len(list_refusals(session, since, until, campaign_id=campaign.id))
    return CampaignLicenseReport(
        campaign=campaign.name, campaign_id=campaign.id, commercial=campaign.commercial_use,
        assets=totals["assets"], approved_assets=totals["approved"], assets_needing_rereview=totals["rereview"],
        assets_predating_license_chains=totals["legacy"], refusals=refusals,
        licenses=[CampaignLicenseLine(license=identifier, models=sorted(line["models"]), assets=line["assets"],
                                      approved_assets=line["approved"], attributions=list(line["attributions"]),
                                      use_restrictions=list(line["restrictions"]))
                  for identifier, line in sorted(lines.items())])


# -- refusals -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RefusalRecord:
    event_id: int
    occurred_at: datetime
    actor: str
    stage: str          # plan, submission or worker
    campaign: str
    campaign_id: int | None
    commercial: bool
    model: str
    license: str
    rule: str
    message: str
    job_id: int | None
    render_id: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def list_refusals(session: Session, since: object = None, until: object = None, *,
                  campaign_id: int | None = None, rule: str | None = None) -> list[RefusalRecord]:
    """The license policy's refusals (audit events `policy.refused`), oldest first."""
    query = (select(AuditEvent).where(AuditEvent.action == "policy.refused",
                                      *_in_range(AuditEvent.occurred_at, since, until))
             .order_by(AuditEvent.id))
    if campaign_id is not None:
        query = query.where(AuditEvent.entity_id == str(campaign_id))
    records = []
    for event in session.scalars(query):
        after = event.after or {}
        if rule is not None and after.get("rule") != rule:
            continue
        records.append(RefusalRecord(
            event_id=event.id, occurred_at=event.occurred_at, actor=event.actor_name, stage=after.get("stage", ""),
            campaign=after.get("campaign", ""), campaign_id=after.get("campaign_id"),
            commercial=bool(after.get("commercial")), model=after.get("model", ""), license=after.get("license", ""),
            rule=after.get("rule", ""), message=after.get("message", ""), job_id=after.get("job_id"),
            render_id=after.get("render_id")))
    return records


# -- the log for a date range --------------------------------------------------------------------------

def _event_row(event: AuditEvent) -> dict[str, Any]:
    return {"id": event.id, "occurred_at": event.occurred_at.isoformat(), "actor_id": event.actor_id,
            "actor_name": event.actor_name, "action": event.action, "entity_type": event.entity_type,
            "entity_id": event.entity_id, "before": event.before, "after": event.after,
            "prev_hash": event.prev_hash, "hash": event.hash}


def export_events(session: Session, since: object = None, until: object = None, fmt: str = "json") -> str:
    """The audit events of the range, oldest first, as CSV (before/after as JSON text) or JSON (with
    the range and the chain's head, which `farm audit verify --anchor` takes later)."""
    if fmt not in EXPORT_FORMATS:
        raise InvalidInput("format", f"must be one of {', '.join(EXPORT_FORMATS)}")
    _bounds(since, until)  # bad dates fail before anything is written
    _seal(session)
    events = session.execute(select(AuditEvent).where(*_in_range(AuditEvent.occurred_at, since, until))
                             .order_by(AuditEvent.id).execution_options(yield_per=_BATCH)).scalars()
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=EXPORT_COLUMNS)
        writer.writeheader()
        for event in events:
            row = _event_row(event)
            for column in ("before", "after"):
                row[column] = "" if row[column] is None else json.dumps(row[column], sort_keys=True, default=str)
            writer.writerow(row)
        return out.getvalue()
    head = chain_head(session)
    rows = [_event_row(event) for event in events]
    return json.dumps({
        "from": str(parse_date(since, "from") or ""), "to": str(parse_date(until, "to") or ""),
        "exported_at": datetime.now(timezone.utc).isoformat(), "events": rows,
        "head": {"event_id": head.event_id, "hash": head.hash, "anchor": head.anchor()} if head else None,
    }, indent=2, default=str) + "\n"
