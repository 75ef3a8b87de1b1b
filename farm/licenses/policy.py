"""The license policy: may this chain of models render for this campaign?

A render's chain is every model that shapes the image: the checkpoint, each LoRA, the VAE, the
upscaler, and for an upscale the chain of the image it enlarges. Each model brings its own
license, and derivatives bring their base model's too: a LoRA always carries the terms of the
checkpoint it was trained on; any other model with a base (a fine-tuned or merged checkpoint, a
VAE) carries its base's terms when the base's license says derivatives inherit it. Every term
counts and the most restrictive wins: one refusal refuses the render.

Rules, for a commercial campaign (a non-commercial campaign may use every license's terms):
- `commercial_use_forbidden`: the license forbids commercial use;
- `separate_license_required`: commercial use needs a license of its own (FLUX.1 [dev]);
- `revenue_not_declared` / `revenue_cap_exceeded`: the license is free for commercial use only
  under an annual revenue cap (Stability AI Community: USD 1M); the organisation's declared
  revenue (setting `organisation_annual_revenue_usd`) must be under it, and must be declared.
For every campaign:
- `model_suspended`: a model of the chain, or a base model whose terms it carries, is suspended.

An allowed decision lists what each license asks of whoever uses the image (attribution text,
use restrictions to pass on, as OpenRAIL's use-based restrictions must be): assets keep that list
(`assets.license_chain`) and exports show it. A refused decision names the model, the license and
the rule; `enforce` audits it (`policy.refused`) and raises PolicyRefused.

The policy is evaluated when a job is submitted (every submission path: farm.jobs.service,
farm.jobs.batch, farm.review.rerender) and again by the worker before it renders
(farm.jobs.execution), which caches model terms by (model id, policy_version).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from farm.audit.log import record_event_after_transaction
from farm.db.models import Campaign, License, RegisteredModel, User
from farm.errors import InvalidInput

RULES = ("model_suspended", "commercial_use_forbidden", "separate_license_required",
         "revenue_not_declared", "revenue_cap_exceeded")
REVENUE_SETTING = "organisation_annual_revenue_usd"
MAX_LORAS = 16
LORA_WEIGHT_RANGE = (-10.0, 10.0)
# How deep a base-model chain is followed (a LoRA of a fine-tune of a base is depth 2).
MAX_BASE_DEPTH = 8


# -- what the policy reads -------------------------------------------------------------------------

@dataclass(frozen=True)
class LicenseTerms:
    identifier: str
    name: str
    url: str | None
    commercial_use: str
    revenue_cap_usd: int | None
    attribution_required: bool
    attribution_text: str | None
    use_restrictions: tuple[str, ...]
    derivatives_inherit: bool

    @classmethod
    def of(cls, license_: License) -> "LicenseTerms":
        return cls(identifier=license_.identifier, name=license_.name, url=license_.url,
                   commercial_use=license_.commercial_use, revenue_cap_usd=license_.revenue_cap_usd,
                   attribution_required=license_.attribution_required, attribution_text=license_.attribution_text,
                   use_restrictions=tuple(license_.use_restrictions or ()),
                   derivatives_inherit=license_.derivatives_inherit)


@dataclass(frozen=True)
class ModelTerms:
    id: int
    name: str
    kind: str
    architecture: str
    sha256: str
    status: str
    status_reason: str | None
    license: LicenseTerms
    base: "ModelTerms | None" = None

    @classmethod
    def of(cls, model: RegisteredModel, _depth: int = 0) -> "ModelTerms":
        base = None
        if model.base_model is not None and _depth < MAX_BASE_DEPTH:
            base = cls.of(model.base_model, _depth + 1)
        return cls(id=model.id, name=model.name, kind=model.kind, architecture=model.architecture,
                   sha256=model.sha256, status=model.status, status_reason=model.status_reason,
                   license=LicenseTerms.of(model.license), base=base)


@dataclass(frozen=True)
class ChainEntry:
    """One model of a render's chain: what it does there and the request field that named it."""

    role: str   # checkpoint, lora, vae, upscaler; "source checkpoint" etc. for an upscale's source
    field: str  # model, loras[0].name, vae, upscaler, assets
    model: ModelTerms


@dataclass(frozen=True)
class CampaignTerms:
    id: int | None
    name: str
    commercial: bool

    @classmethod
    def of(cls, campaign: Campaign) -> "CampaignTerms":
        return cls(id=campaign.id, name=campaign.name, commercial=bool(campaign.commercial_use))


# -- what it decides -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Refusal:
    model: str
    license: str
    rule: str
    message: str
    field: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LicenseNotice:
    """One model of the chain under one license, and what that license asks of the image's users.
    `via` names the model whose base it is, when these are carried terms."""

    model: str
    kind: str
    sha256: str
    license: str
    license_name: str
    url: str | None
    commercial_use: str
    via: str | None
    attribution: str | None
    use_restrictions: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PolicyDecision:
    allowed: bool
    campaign: CampaignTerms
    organisation_revenue_usd: int | None
    chain: tuple[LicenseNotice, ...]
    refusals: tuple[Refusal, ...] = ()

    @property
    def refusal(self) -> Refusal | None:
        """The refusal a message names first (the first in chain order)."""
        return self.refusals[0] if self.refusals else None

    def license_chain(self) -> list[dict[str, Any]]:
        """What assets keep: each model and license, with attribution and restrictions to pass on."""
        return [notice.to_dict() for notice in self.chain]

    def attributions(self) -> list[str]:
        """The attribution texts the chain's licenses require, each once."""
        return list(dict.fromkeys(n.attribution for n in self.chain if n.attribution))

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision": "allowed" if self.allowed else "refused",
            "campaign": {"id": self.campaign.id, "name": self.campaign.name, "commercial": self.campaign.commercial},
            "organisation_revenue_usd": self.organisation_revenue_usd,
            "rules": list(RULES),
            "chain": self.license_chain(),
            "attributions": self.attributions(),
            "refusals": [r.to_dict() for r in self.refusals],
        }


class PolicyRefused(InvalidInput):
    """The license policy refuses a render; `field` is the request field naming the model."""

    def __init__(self, decision: PolicyDecision):
        refusal = decision.refusal
        super().__init__(refusal.field, refusal.message)
        self.decision = decision
        self.rule = refusal.rule


# -- the evaluation --------------------------------------------------------------------------------

def _usd(amount: int) -> str:
    return f"USD {amount:,}"


def _carried_terms(entry: ChainEntry) -> Iterable[tuple[ModelTerms, str | None]]:
    """(model whose license applies, the model it is the base of or None) for an entry."""
    yield entry.model, None
    derivative = entry.model
    base = derivative.base
    while base is not None:
        # A LoRA is trained on its base and only means something with it: it always carries the
        # base's terms. Other derivatives carry them when the base's license says so.
        if derivative.kind == "lora" or base.license.derivatives_inherit:
            yield base, derivative.name
        derivative, base = base, base.base


def _describe(model: ModelTerms, via: str | None, entry: ChainEntry) -> str:
    if via is None:
        return f"{entry.role} '{model.name}'"
    return f"{entry.role} '{entry.model.name}' carries the terms of its base model '{model.name}', which"


def _license_refusal(model: ModelTerms, via: str | None, entry: ChainEntry, campaign: CampaignTerms,
                     revenue: int | None) -> tuple[str, str] | None:
    terms = model.license
    if not campaign.commercial or terms.commercial_use == "allowed":
        return None
    who = _describe(model, via, entry)
    under = f"is under {terms.name} ({terms.identifier})"
    commercial = f"campaign '{campaign.name}' is commercial"
    if terms.commercial_use == "forbidden":
        return "commercial_use_forbidden", f"{who} {under}, which forbids commercial use; {commercial}"
    if terms.commercial_use == "separate_license_required":
        return ("separate_license_required",
                f"{who} {under}, which needs a separate license for commercial use; {commercial}")
    cap = terms.revenue_cap_usd
    if terms.commercial_use == "revenue_capped":
        free_under = f"which is free for commercial use only under {_usd(cap)} annual revenue" if cap else \
            "which is free for commercial use only under a revenue cap it does not state"
        if revenue is None:
            return ("revenue_not_declared",
                    f"{who} {under}, {free_under}, and the organisation's annual revenue is not declared; "
                    f"{commercial}. Ops: declare it in the {REVENUE_SETTING} setting "
                    f"(FARM_{REVENUE_SETTING.upper()})")
        if cap is None or revenue >= cap:
            return ("revenue_cap_exceeded",
                    f"{who} {under}, {free_under}; the organisation's declared annual revenue is {_usd(revenue)}; "
                    f"{commercial}")
        return None
    return "commercial_use_forbidden", f"{who} {under}, whose commercial use '{terms.commercial_use}' is unknown"


def evaluate(chain: Sequence[ChainEntry], campaign: CampaignTerms, *,
             organisation_revenue_usd: int | None) -> PolicyDecision:
    """The decision for `chain` in `campaign`; pure (no database, no settings)."""
    refusals: list[Refusal] = []
    notices: list[LicenseNotice] = []
    seen: set[tuple[int, str | None]] = set()
    for entry in chain:
        for model, via in _carried_terms(entry):
            if (model.id, via) in seen:
                continue
            seen.add((model.id, via))
            terms = model.license
            notices.append(LicenseNotice(
                model=model.name, kind=model.kind, sha256=model.sha256, license=terms.identifier,
                license_name=terms.name, url=terms.url, commercial_use=terms.commercial_use, via=via,
                attribution=terms.attribution_text if terms.attribution_required else None,
                use_restrictions=list(terms.use_restrictions)))
            if model.status != "active":
                refusals.append(Refusal(
                    model=model.name, license=terms.identifier, rule="model_suspended", field=entry.field,
                    message=f"{_describe(model, via, entry)} is {model.status}: "
                            f"{model.status_reason or 'no reason given'} [rule: model_suspended]"))
            refused = _license_refusal(model, via, entry, campaign, organisation_revenue_usd)
            if refused is not None:
                rule, message = refused
                refusals.append(Refusal(model=model.name, license=terms.identifier, rule=rule,
                                        message=f"{message} [rule: {rule}]", field=entry.field))
    return PolicyDecision(allowed=not refusals, campaign=campaign, organisation_revenue_usd=organisation_revenue_usd,
                          chain=tuple(notices), refusals=tuple(refusals))


# -- chains from requests and rows ------------------------------------------------------------------

CHAIN_PARAMS = ("loras", "vae")


def checked_chain_params(params: Mapping[str, Any], field_prefix: str = "") -> dict[str, Any]:
    """The chain keys of a job's params (`loras`: [{name, weight}], `vae`: name), validated and
    normalised; {} when the job names none. The renderer applies them with issue 6; the policy
    counts them already."""
    out: dict[str, Any] = {}
    loras = params.get("loras")
    if loras is not None and loras != []:
        if isinstance(loras, (str, bytes)) or not isinstance(loras, Sequence):
            raise InvalidInput(f"{field_prefix}loras", "must be a list of {name, weight}")
        if len(loras) > MAX_LORAS:
            raise InvalidInput(f"{field_prefix}loras", f"at most {MAX_LORAS} LoRAs")
        checked = []
        for index, lora in enumerate(loras):
            where = f"{field_prefix}loras[{index}]"
            if isinstance(lora, str):
                lora = {"name": lora}
            if not isinstance(lora, Mapping) or set(lora) - {"name", "weight"}:
                raise InvalidInput(where, "must be {name, weight}")
            name = lora.get("name")
            if not isinstance(name, str) or not name.strip():
                raise InvalidInput(f"{where}.name", "a LoRA name is required")
            weight = lora.get("weight", 1.0)
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) \
                    or not LORA_WEIGHT_RANGE[0] <= weight <= LORA_WEIGHT_RANGE[1]:
                raise InvalidInput(f"{where}.weight", f"must be a number from {LORA_WEIGHT_RANGE[0]:g} to "
                                                      f"{LORA_WEIGHT_RANGE[1]:g}, got {weight!r}")
            checked.append({"name": name.strip(), "weight": float(weight)})
        out["loras"] = checked
    vae = params.get("vae")
    if vae is not None:
        if not isinstance(vae, str) or not vae.strip():
            raise InvalidInput(f"{field_prefix}vae", "must be the name of a registered VAE")
        out["vae"] = vae.strip()
    return out


def _named(session: Session, name: str, kind: str, field: str) -> RegisteredModel:
    model = session.scalar(select(RegisteredModel).where(RegisteredModel.name == name))
    if model is None:
        known = ", ".join(session.scalars(select(RegisteredModel.name).where(RegisteredModel.kind == kind)
                                          .order_by(RegisteredModel.name))) or "none"
        raise InvalidInput(field, f"unknown {kind} '{name}'; registered: {known}")
    if model.kind != kind:
        raise InvalidInput(field, f"'{name}' is a {model.kind}, not a {kind}")
    return model


def render_chain(session: Session, checkpoint: RegisteredModel, params: Mapping[str, Any], *,
                 role_prefix: str = "", field_prefix: str = "", checkpoint_field: str = "model") -> list[ChainEntry]:
    """The chain of a txt2img render: its checkpoint, the LoRAs and VAE its params name.

    InvalidInput names the field of a LoRA or VAE that is unknown, of another kind, or made for
    another architecture than the checkpoint's."""
    chain = [ChainEntry(f"{role_prefix}checkpoint", checkpoint_field, ModelTerms.of(checkpoint))]
    extra = checked_chain_params(params, field_prefix)
    for index, lora in enumerate(extra.get("loras", [])):
        field = f"{field_prefix}loras[{index}].name"
        model = _named(session, lora["name"], "lora", field)
        if model.architecture != checkpoint.architecture:
            raise InvalidInput(field, f"LoRA '{model.name}' is for {model.architecture} models; checkpoint "
                                      f"'{checkpoint.name}' is {checkpoint.architecture}")
        chain.append(ChainEntry(f"{role_prefix}lora", field, ModelTerms.of(model)))
    if "vae" in extra:
        field = f"{field_prefix}vae"
        model = _named(session, extra["vae"], "vae", field)
        if model.architecture != checkpoint.architecture:
            raise InvalidInput(field, f"VAE '{model.name}' is for {model.architecture} models; checkpoint "
                                      f"'{checkpoint.name}' is {checkpoint.architecture}")
        chain.append(ChainEntry(f"{role_prefix}vae", field, ModelTerms.of(model)))
    return chain


def asset_chain(session: Session, asset: Any, *, role_prefix: str = "source ", field: str = "assets",
                max_depth: int = 8) -> list[ChainEntry]:
    """The chain that made an existing asset, from the registry as it is now: its render's
    checkpoint, LoRAs and VAE; for an upscale, the upscaler and the chain of the image it enlarged."""
    from farm.db.models import Asset

    chain: list[ChainEntry] = []
    render = asset.render
    for _ in range(max_depth):
        if render.kind != "upscale":
            chain += render_chain(session, render.model, render.params or {}, role_prefix=role_prefix,
                                  field_prefix="", checkpoint_field=field)
            break
        chain.append(ChainEntry(f"{role_prefix}upscaler", field, ModelTerms.of(render.model)))
        source = session.get(Asset, (render.params or {}).get("source_asset_id"))
        if source is None:
            break
        render = source.render
    return chain


def dedupe(chain: Iterable[ChainEntry]) -> list[ChainEntry]:
    """Each model once, where it first appears (an upscale of ten images of one checkpoint)."""
    seen: set[int] = set()
    out = []
    for entry in chain:
        if entry.model.id not in seen:
            seen.add(entry.model.id)
            out.append(entry)
    return out


# -- enforcing it ----------------------------------------------------------------------------------

def _refusal_event(decision: PolicyDecision, stage: str, context: Mapping[str, Any]) -> dict[str, Any]:
    refusal = decision.refusal
    return {
        "stage": stage, "campaign": decision.campaign.name, "campaign_id": decision.campaign.id,
        "commercial": decision.campaign.commercial, "model": refusal.model, "license": refusal.license,
        "rule": refusal.rule, "message": refusal.message, "refusals": [r.to_dict() for r in decision.refusals],
        "chain": [{"model": n.model, "sha256": n.sha256, "license": n.license, "via": n.via} for n in decision.chain],
        "organisation_revenue_usd": decision.organisation_revenue_usd, **context,
    }


def audit_refusal(session: Session, decision: PolicyDecision, *, stage: str, actor: User | None,
                  **context: Any) -> None:
    """Record `policy.refused` durably, whether the caller's transaction commits or rolls back
    (a refused submission rolls back everything else it wrote)."""
    record_event_after_transaction(session, action="policy.refused", entity_type="campaign",
                                   entity_id=decision.campaign.id, actor=actor,
                                   after=_refusal_event(decision, stage, context))


def enforce(session: Session, chain: Sequence[ChainEntry], campaign: Campaign, *,
            organisation_revenue_usd: int | None, actor: User | None, stage: str = "submission",
            **context: Any) -> PolicyDecision:
    """The allowed decision for `chain` in `campaign`, or PolicyRefused (audited as policy.refused)."""
    decision = evaluate(dedupe(chain), CampaignTerms.of(campaign), organisation_revenue_usd=organisation_revenue_usd)
    if not decision.allowed:
        audit_refusal(session, decision, stage=stage, actor=actor, **context)
        raise PolicyRefused(decision)
    return decision


def revenue_of(settings: Any) -> int | None:
    """The declared revenue from a Settings object (None when there is no settings object)."""
    return getattr(settings, REVENUE_SETTING, None) if settings is not None else None


def bump_policy_versions(session: Session, model_ids: Iterable[int]) -> set[int]:
    """Raise policy_version of the models and of every model derived from them (their terms carry
    the base's), so workers reload their terms; returns the ids raised."""
    ids = set(model_ids)
    frontier = set(ids)
    while frontier:
        children = set(session.scalars(select(RegisteredModel.id)
                                       .where(RegisteredModel.base_model_id.in_(frontier)))) - ids
        ids |= children
        frontier = children
    if ids:
        session.execute(update(RegisteredModel).where(RegisteredModel.id.in_(ids))
                        .values(policy_version=RegisteredModel.policy_version + 1)
                        .execution_options(synchronize_session=False))
    return ids


# -- the worker's cache ----------------------------------------------------------------------------

@dataclass
class ModelTermsCache:
    """A worker's copy of model terms by (model id, policy_version). The lease returns the
    checkpoint's policy_version with the row, so while nothing changed the re-check reads no rows."""

    _terms: dict[int, tuple[int, ModelTerms]] = field(default_factory=dict)
    loads: int = 0

    def get(self, session: Session, model_id: int, policy_version: int | None) -> ModelTerms:
        hit = self._terms.get(model_id)
        if hit is not None and policy_version is not None and hit[0] == policy_version:
            return hit[1]
        model = session.get(RegisteredModel, model_id, populate_existing=True)
        terms = ModelTerms.of(model)
        self._terms[model_id] = (model.policy_version, terms)
        self.loads += 1
        return terms
