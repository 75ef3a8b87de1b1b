"""Provenance through the worker: renders of the tiny model on the embedded farm, signed and
watermarked as the settings ask, read back with `farm provenance show`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from farm.cli import main
from farm.context import FarmContext, prepare_database
from farm.db.models import Asset, RegisteredModel, Render
from farm.db.session import transaction
from farm.jobs.dispatch import submit_prompt, submit_upscale_job
from farm.jobs.execution import Outcome, execute_render
from farm.provenance.manifest import COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA, TRAINED_ALGORITHMIC_MEDIA
from farm.queue.runtime import build_worker_context
from farm.render.png import read_png_text
from farm.settings import SettingsError, load_settings
from tests.conftest import embedded_environ
from tests.fixtures.certificates import write_signing_files
from tests.unit.provenance_helpers import with_pixel_changed


@pytest.fixture
def signing(tmp_path):
    return write_signing_files(tmp_path / "c2pa")


@pytest.fixture
def signing_farm(farm_home, signing):
    settings = load_settings(embedded_environ(farm_home, **signing.environ(
        FARM_WATERMARK="dwtDct", FARM_WATERMARK_FARM_ID="T1")))
    ctx = FarmContext(settings)
    prepare_database(ctx)
    yield ctx
    ctx.db_engine.dispose()


def _render(farm, worker, job_id) -> Asset:
    with transaction(farm.session_factory) as session:
        render_id = session.scalars(select(Render.id).where(Render.job_id == job_id)).one()
    assert execute_render(worker, render_id) is Outcome.SUCCEEDED
    with transaction(farm.session_factory) as session:
        return session.scalars(select(Asset).where(Asset.render_id == render_id)).one()


def _show(path: Path, *flags: str):
    result = CliRunner().invoke(main, ["provenance", "show", str(path), *flags])
    return result.exit_code, result.output


def _model(farm, name: str) -> tuple[str, str]:
    """(sha256, license identifier) of a registered model."""
    with transaction(farm.session_factory) as session:
        model = session.scalars(select(RegisteredModel).where(RegisteredModel.name == name)).one()
        return model.sha256, model.license.identifier


def test_a_render_is_signed_and_watermarked_and_reads_back(signing_farm, signing, tmp_path):
    worker = build_worker_context(signing_farm.settings, worker_name="w1")
    assert worker.provenance.signer is not None and worker.provenance.watermark_farm_id == "T1"
    job_id = submit_prompt(signing_farm, prompt="a lighthouse at dusk", seed=11,
                           params={"steps": 2, "width": 256, "height": 256})
    asset = _render(signing_farm, worker, job_id)
    png = signing_farm.storage.get(asset.storage_key)
    path = tmp_path / "render.png"
    path.write_bytes(png)
    tiny_sha256, tiny_license = _model(signing_farm, "tiny-sd")

    code, output = _show(path, "--json", "--trust-anchors", str(signing.ca))
    assert code == 0, output
    report = json.loads(output)
    assert report["parameters"].startswith("a lighthouse at dusk\nSteps: 2,")
    assert report["farm"]["render_id"] == asset.render_id and report["farm"]["job_id"] == job_id
    manifest = report["c2pa"]
    assert manifest["validation"]["state"] == "Trusted"
    assert [a["action"] for a in manifest["actions"]] == ["c2pa.created"]
    assert manifest["actions"][0]["digital_source_type"] == TRAINED_ALGORITHMIC_MEDIA
    generation = manifest["generation"]
    assert (generation["render_id"], generation["job_id"], generation["campaign_id"], generation["kind"]) == \
        (asset.render_id, job_id, asset.campaign_id, "txt2img")
    checkpoint = generation["models"][0]
    assert (checkpoint["name"], checkpoint["kind"], checkpoint["sha256"], checkpoint["license"]) == \
        ("tiny-sd", "checkpoint", tiny_sha256, tiny_license)
    # The watermark carries this farm's id and the render, and the farm chunk says so too.
    expected_mark = {"method": "dwtDct", "farm_id": "T1", "render_id": asset.render_id}
    assert report["watermark"] == expected_mark
    assert report["farm"]["watermark"] == expected_mark
    # The asset row describes the signed file (its hash is over the bytes stored).
    assert asset.size_bytes == len(png)

    code, output = _show(path, "--trust-anchors", str(signing.ca))
    assert code == 0, output
    assert "action: c2pa.created, digital source type: trainedAlgorithmicMedia" in output
    assert f"checkpoint: tiny-sd, sha256 {tiny_sha256}, license {tiny_license}" in output
    assert "signature: valid, signer trusted" in output
    assert f"watermark (dwtDct): farm T1, render {asset.render_id}" in output

    # Without the CA as a trust anchor the file is still intact, but its signer is unknown.
    code, output = _show(path)
    assert code == 0 and "signature: valid (the file is as signed); signer not trusted" in output

    tampered = tmp_path / "tampered.png"
    tampered.write_bytes(with_pixel_changed(png))
    code, output = _show(tampered, "--trust-anchors", str(signing.ca))
    assert code == 1, output
    assert "signature: INVALID" in output and "assertion.dataHash.mismatch" in output


def test_an_upscale_is_a_composite_and_names_the_whole_chain(signing_farm):
    worker = build_worker_context(signing_farm.settings, worker_name="w1")
    source = _render(signing_farm, worker, submit_prompt(signing_farm, prompt="a red shoe", seed=3,
                                                         params={"steps": 2, "width": 128, "height": 128}))
    # 128x128 is under the watermark's 256x256 floor: unmarked, and the farm chunk says why.
    assert json.loads(read_png_text(signing_farm.storage.get(source.storage_key))["farm"])["watermark"] == \
        {"method": "dwtDct", "skipped": "under 65536 pixels"}
    upscaled = _render(signing_farm, worker, submit_upscale_job(signing_farm, asset_ids=[source.id], scale=2))
    png = signing_farm.storage.get(upscaled.storage_key)
    from farm.provenance.reading import read_provenance

    report = read_provenance(png)
    manifest = report["c2pa"]
    assert manifest["validation"]["valid"]
    assert manifest["actions"][0]["digital_source_type"] == COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA
    generation = manifest["generation"]
    assert generation["kind"] == "upscale" and generation["source_asset_id"] == source.id
    models = {(m["name"], m["kind"]): m for m in generation["models"]}
    assert models[("lanczos", "upscaler")]["sha256"] == _model(signing_farm, "lanczos")[0]
    assert models[("tiny-sd", "checkpoint")]["sha256"] == _model(signing_farm, "tiny-sd")[0]
    assert report["watermark"]["render_id"] == upscaled.render_id  # 256x256 after upscaling


def test_a_worker_with_a_missing_key_does_not_start(farm_home, signing):
    signing.key.unlink()
    settings = load_settings(embedded_environ(farm_home, **signing.environ()))
    with pytest.raises(SettingsError) as caught:
        build_worker_context(settings, worker_name="w1")
    assert caught.value.field == "c2pa_private_key_path"
    assert str(signing.key) in caught.value.message


def test_signing_off_writes_no_manifest(embedded_farm, tmp_path):
    worker = build_worker_context(embedded_farm.settings, worker_name="w1")
    assert worker.provenance is None
    asset = _render(embedded_farm, worker, submit_prompt(embedded_farm, prompt="a cup", seed=1,
                                                         params={"steps": 2, "width": 64, "height": 64}))
    path = tmp_path / "plain.png"
    path.write_bytes(embedded_farm.storage.get(asset.storage_key))
    code, output = _show(path)
    assert code == 0, output
    assert "C2PA manifest: none" in output and "watermark: none found" in output
    assert f"farm chunk: render {asset.render_id}, job {asset.job_id}, model tiny-sd" in output
