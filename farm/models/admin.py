"""Administering registered models: add, list, show, suspend, unsuspend, change license.

What the CLI (`farm models ...`) and the dashboard call. Session-level functions write in the
caller's transaction and return what changed; the `*_now` functions take a FarmContext, commit,
and then queue the renders a change released (messages go out only after the commit).

Suspending a model or changing its license re-checks the license policy of every unfinished job
whose chain uses it (its checkpoint, a LoRA, the VAE, the upscaler, an upscale's source, or a base
model whose terms those carry): queued renders the policy now refuses are held (state `held`,
`hold_reason` = the refusal), and every asset the model helped make is flagged for re-review.
Unsuspending, or a license change that allows them again, releases held renders the policy
allows (they are queued and routed again); `recheck_held` does the same on demand (after the
organisation declares its revenue, say). Each change is one audit event with before and after;
the renders held and released are written to the log by the render audit sweep.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Sequence

from sqlalchemy import Text, cast, func, or_, select, update
from sqlalchemy.orm import Session

from farm.audit.log import record_event, record_events
from farm.db.base import utcnow
from farm.db.models import MODEL_KINDS, MODEL_STATUSES, Asset, Job, RegisteredModel, Render, User
from farm.errors import InvalidInput
from farm.licenses.policy import (ChainEntry, CampaignTerms, ModelTerms, PolicyDecision, asset_chain,
                                  bump_policy_versions, dedupe, evaluate, render_chain, revenue_of)
from farm.licenses.registry import get_license
from farm.models.hashing import short_hash
from farm.models.registry import get_model, register_model
from farm.settings import Settings

ACTIVE_JOB_STATUSES = ("queued", "running", "paused")
REASON_MAX_LENGTH = 2000


# -- read models ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelInfo:
    id: int
    name: str
    kind: str
    architecture: str
    uri: str
    sha256: str
    short_hash: str
    license: str
    license_name: str
    commercial_use: str
    base_model: str | None
    source_url: str | None
    status: str
    status_reason: str | None
    added_by: str | None
    created_at: datetime
    updated_at: datetime | None
    policy_version: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ModelDetail:
    model: ModelInfo
    derivatives: list[str]      # models registered with this one as their base
    queued_renders: int
    held_renders: int
    assets: int                 # assets it made as checkpoint or upscaler
    assets_needing_rereview: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ModelChange:
    """What an admin change did: the model after it, renders held and released, assets flagged."""

    model: ModelInfo
    held_renders: int = 0
    released_render_ids: list[int] = field(default_factory=list)
    still_held_renders: int = 0
    flagged_assets: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "released_renders": len(self.released_render_ids)}


def model_info(session: Session, model: RegisteredModel) -> ModelInfo:
    added_by = session.get(User, model.added_by_id).name if model.added_by_id else None
    return ModelInfo(
        id=model.id, name=model.name, kind=model.kind, architecture=model.architecture, uri=model.uri,
        sha256=model.sha256, short_hash=short_hash(model.sha256), license=model.license.identifier,
        license_name=model.license.name, commercial_use=model.license.commercial_use,
        base_model=model.base_model.name if model.base_model else None, source_url=model.source_url,
        status=model.status, status_reason=model.status_reason, added_by=added_by, created_at=model.created_at,
        updated_at=model.updated_at, policy_version=model.policy_version,
    )


def list_models(session: Session, *, kind: str | None = None, status: str | None = None,
                license_identifier: str | None = None) -> list[ModelInfo]:
    query = select(RegisteredModel).order_by(RegisteredModel.kind, RegisteredModel.name)
    if kind is not None:
        if kind not in MODEL_KINDS:
            raise InvalidInput("kind", f"must be one of {', '.join(MODEL_KINDS)}")
        query = query.where(RegisteredModel.kind == kind)
    if status is not None:
        if status not in MODEL_STATUSES:
            raise InvalidInput("status", f"must be one of {', '.join(MODEL_STATUSES)}")
        query = query.where(RegisteredModel.status == status)
    if license_identifier is not None:
        query = query.where(RegisteredModel.license_id == get_license(session, license_identifier).id)
    return [model_info(session, model) for model in session.scalars(query)]


def show_model(session: Session, name: str) -> ModelDetail:
    model = get_model(session, name)
    counts = dict(session.execute(
        select(Render.state, func.count(Render.id)).where(Render.model_id == model.id,
                                                          Render.state.in_(("queued", "held")))
        .group_by(Render.state)).all())
    assets = session.execute(select(func.count(Asset.id), func.count(Asset.id).filter(Asset.needs_rereview))
                             .where(Asset.model_id == model.id)).one()
    derivatives = list(session.scalars(select(RegisteredModel.name).where(RegisteredModel.base_model_id == model.id)
                                       .order_by(RegisteredModel.name)))
    return ModelDetail(model=model_info(session, model), derivatives=derivatives,
                       queued_renders=counts.get("queued", 0), held_renders=counts.get("held", 0),
                       assets=assets[0], assets_needing_rereview=assets[1])


# -- adding -----------------------------------------------------------------------------------------

def add_model(session: Session, settings: Settings, actor: User | None, *, path: Path | str, name: str, kind: str,
              license_identifier: str, base: str | None = None, source_url: str | None = None,
              architecture: str | None = None) -> ModelInfo:
    """Register a model file or folder from the configured model folders (see farm.models.registry)."""
    model = register_model(session, name=name, kind=kind, path=Path(path), license_identifier=license_identifier,
                           model_folders=settings.allowed_model_folders, architecture=architecture,
                           base_model_name=base, source_url=source_url, added_by=actor)
    return model_info(session, model)


# -- the policy re-check of unfinished work ------------------------------------------------------------

def _reason(reason: object, field_name: str = "reason") -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidInput(field_name, "say why (it is shown on held renders and in the audit log)")
    reason = reason.strip()
    if len(reason) > REASON_MAX_LENGTH:
        raise InvalidInput(field_name, f"must be at most {REASON_MAX_LENGTH} characters")
    return reason


def _chain_key(render: Render) -> tuple:
    params = render.params or {}
    return (render.kind, render.model_id, json.dumps(params.get("loras"), sort_keys=True), params.get("vae"),
            params.get("source_asset_id"))


def _chain_of(session: Session, render: Render) -> list[ChainEntry]:
    """The chain of an existing render, from the registry as it is now."""
    params = render.params or {}
    if render.kind != "upscale":
        return render_chain(session, render.model, params)
    chain = [ChainEntry("upscaler", "upscaler", ModelTerms.of(render.model))]
    source = session.get(Asset, params.get("source_asset_id"))
    if source is not None:
        chain += asset_chain(session, source)
    return dedupe(chain)


def _uses(chain: Sequence[ChainEntry], model_ids: set[int]) -> bool:
    for entry in chain:
        terms = entry.model
        while terms is not None:
            if terms.id in model_ids:
                return True
            terms = terms.base
    return False


@dataclass
class _Recheck:
    held: int = 0
    released: list[int] = field(default_factory=list)
    still_held: int = 0
    jobs: set[int] = field(default_factory=set)


def _recheck(session: Session, settings: Settings | None, model_ids: set[int] | None, states: Sequence[str],
             reason_prefix: str) -> _Recheck:
    """Evaluate the policy for unfinished renders in `states` whose chain uses one of `model_ids`
    (every one when None): hold the refused queued ones, release the allowed held ones."""
    result = _Recheck()
    renders = session.scalars(
        select(Render).join(Job, Job.id == Render.job_id)
        .where(Render.state.in_(tuple(states)), Job.status.in_(ACTIVE_JOB_STATUSES))
        .order_by(Render.job_id, Render.id)).all()
    groups: dict[tuple, list[Render]] = defaultdict(list)
    for render in renders:
        groups[(render.job_id, *_chain_key(render))].append(render)
    decisions: dict[tuple, PolicyDecision | None] = {}
    for key, members in groups.items():
        first = members[0]
        try:
            chain = _chain_of(session, first)
        except InvalidInput as error:  # a LoRA or VAE of the chain is gone or changed kind
            decision, message = None, f"{error.field}: {error.message}"
        else:
            if model_ids is not None and not _uses(chain, model_ids):
                continue
            decision = evaluate(chain, CampaignTerms.of(first.job.campaign),
                                organisation_revenue_usd=revenue_of(settings))
            message = decision.refusal.message if not decision.allowed else None
        decisions[key] = decision
        ids = [render.id for render in members]
        result.jobs.add(first.job_id)
        if message is not None:
            hold_reason = f"{reason_prefix}: {message}" if reason_prefix else message
            queued = [r.id for r in members if r.state == "queued"]
            held = [r.id for r in members if r.state == "held"]
            if queued:
                session.execute(update(Render).where(Render.id.in_(queued), Render.state == "queued")
                                .values(state="held", hold_reason=hold_reason, audited_state="held")
                                .execution_options(synchronize_session=False))
                _render_events(session, "render.held", first.job_id, queued, hold_reason=hold_reason)
                result.held += len(queued)
            if held:
                session.execute(update(Render).where(Render.id.in_(held)).values(hold_reason=hold_reason)
                                .execution_options(synchronize_session=False))
                result.still_held += len(held)
        else:
            held = [r.id for r in members if r.state == "held"]
            if held:
                # Back to the queue; audited_state cleared, so its end is written to the log later.
                session.execute(update(Render).where(Render.id.in_(held), Render.state == "held")
                                .values(state="queued", hold_reason=None, audited_state=None, error=None)
                                .execution_options(synchronize_session=False))
                _render_events(session, "render.released", first.job_id, held)
                result.released += held
            if decision is not None:
                job = first.job
                job.policy = {**decision.to_dict(), "rechecked_at": utcnow().isoformat()}
    session.expire_all()
    return result


def _render_events(session: Session, action: str, job_id: int, render_ids: list[int], **after: Any) -> None:
    """Holds and releases are written to the audit log at once, one event per render (they are
    admin actions, off the workers' path; farm.audit.renders writes the workers' transitions)."""
    record_events(session, [dict(action=action, entity_type="render", entity_id=render_id,
                                 after={"job_id": job_id, "state": "held" if action == "render.held" else "queued",
                                        **after})
                            for render_id in render_ids])


def _flag_assets(session: Session, model: RegisteredModel, reason: str) -> int:
    """Flag every asset the model helped make (as checkpoint or upscaler, or in its license chain)."""
    uses = or_(Asset.model_id == model.id, cast(Asset.license_chain, Text).like(f"%{model.sha256}%"))
    return session.execute(update(Asset).where(uses).values(needs_rereview=True, rereview_reason=reason)
                           .execution_options(synchronize_session=False)).rowcount


def flag_assets_of_models(session: Session, models: Iterable[RegisteredModel], reason: str) -> int:
    return sum(_flag_assets(session, model, reason) for model in models)


def _snapshot(model: RegisteredModel) -> dict[str, Any]:
    return {"status": model.status, "status_reason": model.status_reason, "license": model.license.identifier,
            "policy_version": model.policy_version}


def _changed(session: Session, model: RegisteredModel, actor: User | None, action: str, before: dict[str, Any],
             recheck: _Recheck, flagged: int, **extra: Any) -> ModelChange:
    session.refresh(model)
    record_event(session, action=action, entity_type="model", entity_id=model.id, actor=actor, before=before,
                 after={**_snapshot(model), "name": model.name, "held_renders": recheck.held,
                        "released_renders": len(recheck.released), "still_held_renders": recheck.still_held,
                        "jobs": sorted(recheck.jobs), "flagged_assets": flagged, **extra})
    return ModelChange(model=model_info(session, model), held_renders=recheck.held,
                       released_render_ids=list(recheck.released), still_held_renders=recheck.still_held,
                       flagged_assets=flagged)


# -- the changes --------------------------------------------------------------------------------------

def suspend_model(session: Session, settings: Settings | None, actor: User | None, name: str,
                  reason: str) -> ModelChange:
    """No new renders with the model; its queued renders are held; its assets flagged for re-review."""
    reason = _reason(reason)
    model = get_model(session, name)
    if model.status == "suspended":
        raise InvalidInput("model", f"model '{model.name}' is suspended already ({model.status_reason})")
    before = _snapshot(model)
    model.status, model.status_reason, model.updated_at = "suspended", reason, utcnow()
    bump_policy_versions(session, [model.id])
    recheck = _recheck(session, settings, {model.id}, ("queued",), "")
    flagged = _flag_assets(session, model, f"model '{model.name}' was suspended: {reason}")
    return _changed(session, model, actor, "model.suspended", before, recheck, flagged, reason=reason)


def unsuspend_model(session: Session, settings: Settings | None, actor: User | None, name: str) -> ModelChange:
    """The model may render again; held renders the policy now allows are released."""
    model = get_model(session, name)
    if model.status != "suspended":
        raise InvalidInput("model", f"model '{model.name}' is not suspended")
    before = _snapshot(model)
    model.status, model.status_reason, model.updated_at = "active", None, utcnow()
    bump_policy_versions(session, [model.id])
    recheck = _recheck(session, settings, {model.id}, ("held",), "")
    return _changed(session, model, actor, "model.unsuspended", before, recheck, 0)


def set_model_license(session: Session, settings: Settings | None, actor: User | None, name: str,
                      license_identifier: str, reason: str | None = None) -> ModelChange:
    """Put the model under another license. Unfinished work using it is re-checked under the new
    terms (refused queued renders held, allowed held renders released); its assets are flagged."""
    model = get_model(session, name)
    license_ = get_license(session, license_identifier)
    if license_.id == model.license_id:
        raise InvalidInput("license", f"model '{model.name}' is under {license_.identifier} already")
    before = _snapshot(model)
    old = model.license.identifier
    model.license, model.updated_at = license_, utcnow()
    session.flush()
    bump_policy_versions(session, [model.id])
    why = f"license of '{model.name}' changed from {old} to {license_.identifier}"
    if reason:
        why += f": {reason.strip()}"
    recheck = _recheck(session, settings, {model.id}, ("queued", "held"), why)
    flagged = _flag_assets(session, model, why)
    return _changed(session, model, actor, "model.license_changed", before, recheck, flagged, reason=reason)


def recheck_held(session: Session, settings: Settings | None, actor: User | None,
                 name: str | None = None) -> ModelChange | dict[str, Any]:
    """Re-evaluate held renders (of one model's chains, or all); release those now allowed."""
    model = get_model(session, name) if name else None
    recheck = _recheck(session, settings, {model.id} if model else None, ("held",), "")
    summary = {"model": model.name if model else None, "released_renders": len(recheck.released),
               "still_held_renders": recheck.still_held, "jobs": sorted(recheck.jobs)}
    record_event(session, action="renders.rechecked", entity_type="model" if model else "farm",
                 entity_id=model.id if model else None, actor=actor, after=summary)
    if model is not None:
        return ModelChange(model=model_info(session, model), released_render_ids=list(recheck.released),
                           still_held_renders=recheck.still_held)
    return {**summary, "released_render_ids": list(recheck.released)}


# -- with the commit and the queueing ------------------------------------------------------------------

def _commit_and_route(ctx, change_of_session) -> Any:
    from farm.db.session import transaction
    from farm.queue.routing import publish, route_renders

    with transaction(ctx.session_factory) as session:
        change = change_of_session(session)
        released = change.released_render_ids if isinstance(change, ModelChange) else change["released_render_ids"]
        messages = route_renders(session, ctx.settings, released) if released else []
    publish(ctx.celery, ctx.session_factory, messages)
    return change


def add_model_now(ctx, actor: User | None, **fields: Any) -> ModelInfo:
    from farm.db.session import transaction

    with transaction(ctx.session_factory) as session:
        return add_model(session, ctx.settings, actor, **fields)


def suspend_model_now(ctx, actor: User | None, name: str, reason: str) -> ModelChange:
    return _commit_and_route(ctx, lambda s: suspend_model(s, ctx.settings, actor, name, reason))


def unsuspend_model_now(ctx, actor: User | None, name: str) -> ModelChange:
    return _commit_and_route(ctx, lambda s: unsuspend_model(s, ctx.settings, actor, name))


def set_model_license_now(ctx, actor: User | None, name: str, license_identifier: str,
                          reason: str | None = None) -> ModelChange:
    return _commit_and_route(ctx, lambda s: set_model_license(s, ctx.settings, actor, name, license_identifier, reason))


def recheck_held_now(ctx, actor: User | None, name: str | None = None):
    return _commit_and_route(ctx, lambda s: recheck_held(s, ctx.settings, actor, name))
