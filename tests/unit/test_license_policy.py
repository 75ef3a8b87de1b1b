"""The license policy: a table over license x campaign type x chain position, submitted through the
services the API and the CLI use, each refusal audited; carried base terms; revenue caps; the most
restrictive term wins; and the pure evaluation."""

import dataclasses

import pytest
from sqlalchemy import func, select

from farm.db.models import AuditEvent, Job, Render, User
from farm.db.session import transaction
from farm.jobs.batch import plan_batch, submit_batch
from farm.jobs.dispatch import submit_prompt
from farm.jobs.service import submit_upscale
from farm.licenses.policy import (CampaignTerms, ChainEntry, LicenseTerms, ModelTerms, PolicyRefused, evaluate)
from tests.unit.compliance_world import DECLARED_REVENUE, LICENSES, build_world

ROLES = ("checkpoint", "lora", "vae", "upscaler")
COMMUNITY = "LicenseRef-Stability-AI-Community"


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_model_dir):
    world = build_world(tmp_path_factory.mktemp("policy") / "farm-data", tiny_model_dir)
    yield world
    world.farm.db_engine.dispose()


def _counts(world):
    with transaction(world.farm.session_factory) as session:
        return session.scalar(select(func.count(Job.id))), session.scalar(select(func.count(Render.id)))


def _last_refusal(world) -> AuditEvent:
    with transaction(world.farm.session_factory) as session:
        return session.scalars(select(AuditEvent).where(AuditEvent.action == "policy.refused")
                               .order_by(AuditEvent.id.desc())).first()


def _refusals(world) -> int:
    with transaction(world.farm.session_factory) as session:
        return session.scalar(select(func.count(AuditEvent.id)).where(AuditEvent.action == "policy.refused"))


def _submit(world, role: str, short: str, campaign_id: int) -> int:
    """Submit a job whose chain has the model under test in `role`, through the service the API
    (batches) or the CLI (upscale) calls; return the job id."""
    if role == "upscaler":
        with transaction(world.farm.session_factory) as session:
            job = submit_upscale(session, source_asset_ids=[world.source_assets[campaign_id]], scale=2,
                                 upscaler_name=f"up-{short}", submitted_by=session.get(User, world.manager.id),
                                 settings=world.farm.settings)
            return job.id
    params = {"checkpoint": {"model": f"ckpt-{short}"},
              "lora": {"loras": [{"name": f"lora-{short}", "weight": 0.7}]},
              "vae": {"vae": f"vae-{short}"}}[role]
    return submit_batch(world.farm, world.manager, world.batch(campaign_id, **params)).job_id


MODEL_FOR_ROLE = {"checkpoint": "ckpt-{}", "lora": "lora-{}", "vae": "vae-{}", "upscaler": "up-{}"}
FIELD_FOR_ROLE = {"checkpoint": "model", "lora": "loras[0].name", "vae": "vae", "upscaler": "upscaler"}


@pytest.mark.parametrize("commercial", [True, False], ids=["commercial", "non-commercial"])
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("identifier, short, commercial_rule", LICENSES, ids=[short for _, short, _ in LICENSES])
def test_license_by_campaign_type_by_chain_position(world, identifier, short, commercial_rule, role, commercial):
    campaign_id = world.commercial_id if commercial else world.noncommercial_id
    expected_rule = commercial_rule if commercial else None
    model = MODEL_FOR_ROLE[role].format(short)
    jobs_before = _counts(world)
    refusals_before = _refusals(world)

    if expected_rule is None:
        job_id = _submit(world, role, short, campaign_id)
        with transaction(world.farm.session_factory) as session:
            policy = session.get(Job, job_id).policy
        assert policy["decision"] == "allowed" and policy["campaign"]["commercial"] is commercial
        assert {"model": model, "license": identifier} in [{"model": n["model"], "license": n["license"]}
                                                           for n in policy["chain"]]
        if identifier == COMMUNITY:
            assert policy["attributions"] == ["Powered by Stability AI"]
        assert _refusals(world) == refusals_before
        return

    with pytest.raises(PolicyRefused) as caught:
        _submit(world, role, short, campaign_id)
    refusal = caught.value
    assert (refusal.rule, refusal.field) == (expected_rule, FIELD_FOR_ROLE[role])
    assert f"'{model}'" in refusal.message and identifier in refusal.message
    assert f"[rule: {expected_rule}]" in refusal.message and "campaign 'Commercial' is commercial" in refusal.message
    assert _counts(world) == jobs_before  # nothing of the job was written ...
    assert _refusals(world) == refusals_before + 1  # ... but the refusal is on record
    event = _last_refusal(world)
    assert (event.actor_name, event.entity_type, event.entity_id) == ("ana", "campaign", str(campaign_id))
    assert {key: event.after[key] for key in ("model", "license", "rule", "campaign", "stage", "commercial")} == {
        "model": model, "license": identifier, "rule": expected_rule, "campaign": "Commercial",
        "stage": "submission", "commercial": True}


def test_a_lora_carries_its_non_commercial_base_into_a_commercial_campaign(world):
    with pytest.raises(PolicyRefused) as caught:
        submit_batch(world.farm, world.manager, world.batch(
            world.commercial_id, loras=[{"name": "lora-on-ncresearch", "weight": 1}]))
    assert caught.value.rule == "commercial_use_forbidden"
    assert caught.value.field == "loras[0].name"
    assert ("lora 'lora-on-ncresearch' carries the terms of its base model 'ckpt-ncresearch'"
            in caught.value.message)
    event = _last_refusal(world)
    assert (event.after["model"], event.after["license"]) == (
        "ckpt-ncresearch", "LicenseRef-Stability-AI-Non-Commercial-Research")

    # In a non-commercial campaign the same chain renders, and the job records the carried terms.
    job_id = submit_batch(world.farm, world.manager, world.batch(
        world.noncommercial_id, loras=[{"name": "lora-on-ncresearch", "weight": 1}])).job_id
    with transaction(world.farm.session_factory) as session:
        chain = session.get(Job, job_id).policy["chain"]
    assert {"model": "ckpt-ncresearch", "via": "lora-on-ncresearch",
            "license": "LicenseRef-Stability-AI-Non-Commercial-Research"} in [
        {k: n[k] for k in ("model", "via", "license")} for n in chain]


@pytest.mark.parametrize("revenue, commercial, rule", [
    (None, True, "revenue_not_declared"),
    (999_999, True, None),
    (1_000_000, True, "revenue_cap_exceeded"),
    (25_000_000, True, "revenue_cap_exceeded"),
    (None, False, None),
])
def test_a_revenue_capped_license_checks_the_declared_revenue(world, revenue, commercial, rule):
    settings = world.farm.settings.model_copy(update={"organisation_annual_revenue_usd": revenue})
    campaign_id = world.commercial_id if commercial else world.noncommercial_id
    request = world.batch(campaign_id, model="ckpt-community")
    with transaction(world.farm.session_factory) as session:
        if rule is None:
            plan = plan_batch(session, settings, session.get(User, world.manager.id), request)
            assert plan.model == "ckpt-community"
            return
        with pytest.raises(PolicyRefused) as caught:
            plan_batch(session, settings, session.get(User, world.manager.id), request)
    assert caught.value.rule == rule
    if revenue is None:
        assert "organisation_annual_revenue_usd" in caught.value.message
    else:
        assert f"USD {revenue:,}" in caught.value.message and "USD 1,000,000" in caught.value.message
    event = _last_refusal(world)
    assert (event.after["rule"], event.after["stage"], event.after["organisation_revenue_usd"]) == (
        rule, "plan", revenue)


def test_the_most_restrictive_term_wins_and_every_refusal_is_listed(world):
    with pytest.raises(PolicyRefused) as caught:
        submit_batch(world.farm, world.manager, world.batch(
            world.commercial_id, model="ckpt-community", loras=[{"name": "lora-fluxdev", "weight": 0.5}],
            vae="vae-ncresearch"))
    decision = caught.value.decision
    assert [(r.model, r.rule) for r in decision.refusals] == [
        ("lora-fluxdev", "separate_license_required"), ("vae-ncresearch", "commercial_use_forbidden")]
    assert caught.value.rule == "separate_license_required"  # the first in chain order is named
    assert [r["rule"] for r in _last_refusal(world).after["refusals"]] == [
        "separate_license_required", "commercial_use_forbidden"]


def test_the_cli_path_and_a_direct_prompt_are_checked_too(world):
    with pytest.raises(PolicyRefused) as caught:
        submit_prompt(world.farm, prompt="a shoe", seed=1, params=dict(FAST_PARAMS), model_name="ckpt-fluxdev",
                      campaign_name="Commercial")
    assert caught.value.field == "model" and caught.value.rule == "separate_license_required"
    assert _last_refusal(world).after["stage"] == "submission"


FAST_PARAMS = {"steps": 2, "width": 64, "height": 64}


def test_chain_params_are_validated_naming_the_field(world):
    from farm.errors import InvalidInput

    cases = [({"loras": [{"name": "nope"}]}, "loras[0].name"),
             ({"loras": [{"name": "vae-apache"}]}, "loras[0].name"),
             ({"loras": [{"name": "lora-apache", "weight": 99}]}, "loras[0].weight"),
             ({"loras": "lora-apache"}, "loras"),
             ({"vae": "lora-apache"}, "vae")]
    for params, field in cases:
        with pytest.raises(InvalidInput) as caught:
            submit_batch(world.farm, world.manager, world.batch(world.noncommercial_id, **params))
        assert caught.value.field == field, params


# -- the evaluation on its own ---------------------------------------------------------------------

def _terms(identifier="Apache-2.0", commercial_use="allowed", inherit=False, attribution=None, cap=None):
    return LicenseTerms(identifier=identifier, name=identifier, url=None, commercial_use=commercial_use,
                        revenue_cap_usd=cap, attribution_required=attribution is not None,
                        attribution_text=attribution, use_restrictions=("pass this on",), derivatives_inherit=inherit)


def _model(model_id, name, kind="checkpoint", license=None, base=None, status="active"):
    return ModelTerms(id=model_id, name=name, kind=kind, architecture="sd1", sha256=f"{model_id:064x}",
                      status=status, status_reason="license under review" if status != "active" else None,
                      license=license or _terms(), base=base)


COMMERCIAL = CampaignTerms(id=1, name="Spring", commercial=True)
NC = _terms("LicenseRef-NC", "forbidden", inherit=True)


def test_a_fine_tune_carries_its_base_terms_only_when_the_base_license_says_so():
    inheriting_base = _model(1, "base-nc", license=NC)
    permissive_base = _model(2, "base-apache", license=_terms(inherit=False))
    fine_tune = _model(3, "tuned", base=inheriting_base)
    assert not evaluate([ChainEntry("checkpoint", "model", fine_tune)], COMMERCIAL,
                        organisation_revenue_usd=None).allowed
    free = evaluate([ChainEntry("checkpoint", "model", _model(4, "tuned2", base=permissive_base))], COMMERCIAL,
                    organisation_revenue_usd=None)
    assert free.allowed and [n.model for n in free.chain] == ["tuned2"]
    # A LoRA carries its base's terms whatever the base's license says of derivatives.
    lora = _model(5, "style", kind="lora", base=permissive_base)
    assert [(n.model, n.via) for n in evaluate([ChainEntry("lora", "loras[0].name", lora)], COMMERCIAL,
                                               organisation_revenue_usd=None).chain] == [
        ("style", None), ("base-apache", "style")]


def test_a_suspended_model_is_refused_in_every_campaign_even_as_a_carried_base():
    suspended_base = _model(1, "base", status="suspended")
    lora = _model(2, "style", kind="lora", base=suspended_base)
    for commercial in (True, False):
        decision = evaluate([ChainEntry("lora", "loras[0].name", lora)],
                            CampaignTerms(id=1, name="x", commercial=commercial), organisation_revenue_usd=None)
        assert [(r.model, r.rule) for r in decision.refusals] == [("base", "model_suspended")]
        assert "license under review" in decision.refusal.message


def test_attributions_and_restrictions_are_collected_once_each():
    stability = _terms("LicenseRef-S", "revenue_capped", attribution="Powered by Stability AI", cap=1_000_000)
    chain = [ChainEntry("checkpoint", "model", _model(1, "a", license=stability)),
             ChainEntry("vae", "vae", _model(2, "b", kind="vae", license=stability))]
    decision = evaluate(chain, COMMERCIAL, organisation_revenue_usd=DECLARED_REVENUE)
    assert decision.allowed and decision.attributions() == ["Powered by Stability AI"]
    assert [n["use_restrictions"] for n in decision.license_chain()] == [["pass this on"], ["pass this on"]]
    assert dataclasses.asdict(decision.chain[0])["attribution"] == "Powered by Stability AI"
