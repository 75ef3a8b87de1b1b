"""Campaign export and licenses: each image's license chain (licenses, attributions, restrictions
to pass on) in manifest.csv and manifest.json, LICENSES.txt listing each license once, assets
flagged for re-review left out with the reason, and an export of only flagged assets refused."""

import csv
import io
import json
import zipfile

import pytest
from sqlalchemy import select, update

from farm.accounts.service import create_user
from farm.campaigns.service import create_campaign_as
from farm.db.models import Asset, AuditEvent, Render
from farm.db.session import transaction
from farm.errors import InvalidInput
from farm.exports.campaign_zip import CSV_LIST_SEPARATOR, LICENSES_FILE, MANIFEST_COLUMNS, export_campaign
from farm.jobs.batch import BatchRequest, submit_batch
from farm.jobs.execution import Outcome, execute_render
from farm.models.admin import suspend_model_now
from farm.queue.runtime import build_worker_context
from farm.review.service import decide
from farm.templates.service import create_campaign_template
from tests.unit.compliance_world import FAST, checkpoint_copy, register, weights

COMMUNITY = "LicenseRef-Stability-AI-Community"
OPENRAIL = "CreativeML-OpenRAIL-M"


@pytest.fixture
def exported(embedded_farm):
    """A non-commercial campaign with three approved assets: two of a Stability AI Community
    checkpoint with an OpenRAIL-M LoRA (attribution and restrictions), one of tiny-sd whose model
    is then suspended (flagged for re-review)."""
    ctx = embedded_farm
    with transaction(ctx.session_factory) as session:
        admin = create_user(session, name="root-admin", role="admin")
        manager = create_user(session, name="ana", role="campaign_manager")
        campaign_id = create_campaign_as(session, manager, name="Lookbook", brand="Acme", commercial_use=False).id
        version_id = create_campaign_template(session, manager, campaign_id, name="hero", body="a {{ product }}",
                                              variables=["product"], default_params=FAST).id
    models_dir = ctx.settings.models_dir
    register(ctx, admin, name="ckpt-community", kind="checkpoint", license_identifier=COMMUNITY,
             path=checkpoint_copy(models_dir, "ckpt-community", "community"))
    register(ctx, admin, name="lora-openrail", kind="lora", license_identifier=OPENRAIL,
             base_model_name="ckpt-community", path=weights(models_dir / "loras" / "openrail.safetensors", 7))
    worker = build_worker_context(ctx.settings, worker_name="export-worker")

    def render(seeds, **params) -> list[int]:
        job_id = submit_batch(ctx, manager, BatchRequest(
            campaign_id=campaign_id, template_version_id=version_id, rows=[{"product": "scarf"}], seeds=seeds,
            params={**FAST, **params})).job_id
        with transaction(ctx.session_factory) as session:
            render_ids = list(session.scalars(select(Render.id).where(Render.job_id == job_id).order_by(Render.index)))
        assert [execute_render(worker, render_id) for render_id in render_ids] == [Outcome.SUCCEEDED] * len(seeds)
        with transaction(ctx.session_factory) as session:
            return list(session.scalars(select(Asset.id).where(Asset.render_id.in_(render_ids)).order_by(Asset.id)))

    community = render([1, 2], model="ckpt-community", loras=[{"name": "lora-openrail", "weight": 0.8}])
    tiny = render([3])
    with transaction(ctx.session_factory) as session:
        for asset_id in community + tiny:
            decide(session, manager, asset_id, "approve")
    suspend_model_now(ctx, admin, "tiny-sd", "license in doubt")
    return ctx, manager, campaign_id, community, tiny


def _export(ctx, user, campaign_id):
    out = io.BytesIO()
    with transaction(ctx.session_factory) as session:
        summary = export_campaign(session, ctx.storage, user, campaign_id, out)
    return summary, zipfile.ZipFile(io.BytesIO(out.getvalue()))


def test_manifest_carries_each_images_license_chain_attributions_and_restrictions(exported):
    ctx, manager, campaign_id, community, tiny = exported
    summary, archive = _export(ctx, manager, campaign_id)
    manifest = json.loads(archive.read("manifest.json"))
    assert [row["asset_id"] for row in manifest["assets"]] == community
    for row in manifest["assets"]:
        assert row["license_chain_source"] == "render"
        chain = [(entry["model"], entry["license"], entry["via"]) for entry in row["license_chain"]]
        # The checkpoint, the LoRA, and the LoRA's base terms carried (via the LoRA).
        assert chain == [("ckpt-community", COMMUNITY, None), ("lora-openrail", OPENRAIL, None),
                         ("ckpt-community", COMMUNITY, "lora-openrail")]
        assert row["licenses"] == [COMMUNITY, OPENRAIL]
        assert row["attributions"] == ["Powered by Stability AI"]
        assert any("Acceptable Use Policy" in r for r in row["use_restrictions"])
        assert any("Attachment A" in r for r in row["use_restrictions"])
        assert len(row["use_restrictions"]) == len(set(row["use_restrictions"]))
    assert manifest["campaign"]["commercial_use"] is False

    rows = list(csv.DictReader(io.StringIO(archive.read("manifest.csv").decode())))
    assert set(rows[0]) == set(MANIFEST_COLUMNS)
    assert rows[0]["licenses"] == CSV_LIST_SEPARATOR.join([COMMUNITY, OPENRAIL])
    assert rows[0]["attributions"] == "Powered by Stability AI"
    assert "lora-openrail [" in rows[0]["license_chain"] and "(base of lora-openrail)" in rows[0]["license_chain"]
    assert rows[0]["use_restrictions"].count(CSV_LIST_SEPARATOR) == len(manifest["assets"][0]["use_restrictions"]) - 1


def test_licenses_file_lists_each_license_once_with_attributions_restrictions_and_the_withheld(exported):
    ctx, manager, campaign_id, community, tiny = exported
    summary, archive = _export(ctx, manager, campaign_id)
    assert archive.namelist()[-3:] == ["manifest.csv", "manifest.json", LICENSES_FILE]
    text = archive.read(LICENSES_FILE).decode()
    assert text.count(f"\n{COMMUNITY}: Stability AI Community License\n") == 1
    assert text.count(f"\n{OPENRAIL}: CreativeML Open RAIL-M") == 1
    assert "Attributions to show with the images:\n  - Powered by Stability AI" in text
    assert "Use restrictions to pass on:\n  - Use-based restrictions (CreativeML Open RAIL-M, Attachment A)" in text
    assert "Images: 2 of 2" in text
    assert "ckpt-community (checkpoint, sha256 " in text and ", the base of lora-openrail: its terms carry over" in text
    assert "Apache-2.0" not in text.split("Withheld")[0]  # tiny-sd's asset is not in the export
    assert f"  - asset {tiny[0]}: model 'tiny-sd' was suspended: license in doubt" in text


def test_an_approved_asset_flagged_for_rereview_is_left_out_with_its_reason(exported):
    ctx, manager, campaign_id, community, tiny = exported
    summary, archive = _export(ctx, manager, campaign_id)
    assert summary.assets == 2
    assert summary.withheld == [{"asset_id": tiny[0], "reason": "model 'tiny-sd' was suspended: license in doubt"}]
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["withheld"] == summary.withheld
    assert not any(name.startswith(f"images/{tiny[0]}_") for name in archive.namelist())
    with transaction(ctx.session_factory) as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "campaign.exported")).one()
    assert event.after["withheld_asset_ids"] == tiny and event.after["asset_ids"] == community
    assert event.after["licenses"] == [COMMUNITY, OPENRAIL]

    # A reviewer's new decision clears the flag: the asset exports again.
    with transaction(ctx.session_factory) as session:
        decide(session, manager, tiny[0], "approve", "checked the new terms")
    summary, archive = _export(ctx, manager, campaign_id)
    assert summary.assets == 3 and summary.withheld == []


def test_an_export_of_only_flagged_assets_is_refused_naming_the_campaign(exported):
    ctx, manager, campaign_id, community, tiny = exported
    with transaction(ctx.session_factory) as session:
        session.execute(update(Asset).where(Asset.id.in_(community)).values(needs_rereview=True,
                                                                            rereview_reason="terms changed"))
    with pytest.raises(InvalidInput) as caught:
        _export(ctx, manager, campaign_id)
    assert caught.value.field == "campaign" and "every approved asset" in caught.value.message
    assert "(3)" in caught.value.message
    with transaction(ctx.session_factory) as session:
        assert session.scalars(select(AuditEvent).where(AuditEvent.action == "campaign.exported")).all() == []


def test_an_asset_from_before_license_chains_gets_its_models_license_as_registered_now(exported):
    ctx, manager, campaign_id, community, tiny = exported
    with transaction(ctx.session_factory) as session:
        session.execute(update(Asset).where(Asset.id == community[0]).values(license_chain=None))
    _, archive = _export(ctx, manager, campaign_id)
    row = json.loads(archive.read("manifest.json"))["assets"][0]
    assert row["license_chain_source"] == "registry"
    assert [(e["model"], e["license"]) for e in row["license_chain"]] == [("ckpt-community", COMMUNITY)]
    assert row["attributions"] == ["Powered by Stability AI"]
