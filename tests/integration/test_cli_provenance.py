"""Provenance through the real `farm` command in child processes: `farm render` on the embedded
farm with signing and the watermark turned on by settings, `farm provenance show` reading the
files back, and a worker that refuses to start with a bad signing key."""

from __future__ import annotations

import json

from tests.fixtures.certificates import write_signing_files
from tests.fixtures.processes import farm_environ, run_farm
from tests.unit.provenance_helpers import with_pixel_changed


def test_farm_render_signs_and_farm_provenance_show_reads_it_back(farm_home, tmp_path):
    signing = write_signing_files(tmp_path / "c2pa")
    env = farm_environ(FARM_HOME=str(farm_home), FARM_WATERMARK="dwtDct",
                       FARM_C2PA_TRUST_ANCHORS_PATH=str(signing.ca), **signing.environ())
    out = tmp_path / "out"
    rendered = run_farm("render", "a lighthouse at dusk", "--steps", "2", "--size", "256x256", "--seed", "5",
                        "--out", str(out), env=env)
    assert rendered.returncode == 0, rendered.stderr
    [path] = [line for line in rendered.stdout.splitlines() if line.endswith(".png")]

    shown = run_farm("provenance", "show", path, env=env)
    assert shown.returncode == 0, shown.stderr
    assert "a lighthouse at dusk" in shown.stdout
    assert "action: c2pa.created, digital source type: trainedAlgorithmicMedia" in shown.stdout
    assert "checkpoint: tiny-sd, sha256 " in shown.stdout
    assert "signed by: Render Farm Signer" in shown.stdout
    assert "signature: valid, signer trusted" in shown.stdout

    as_json = run_farm("provenance", "show", path, "--json", env=env)
    report = json.loads(as_json.stdout)
    render_id = report["farm"]["render_id"]
    assert report["c2pa"]["generation"]["render_id"] == render_id
    assert report["watermark"] == {"method": "dwtDct", "farm_id": "RF", "render_id": render_id}

    tampered = tmp_path / "tampered.png"
    tampered.write_bytes(with_pixel_changed(open(path, "rb").read()))
    refused = run_farm("provenance", "show", str(tampered), env=env)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "signature: INVALID" in refused.stdout and "assertion.dataHash.mismatch" in refused.stdout


def test_a_worker_with_a_bad_signing_key_exits_2_naming_the_setting(farm_home, tmp_path):
    signing = write_signing_files(tmp_path / "c2pa")
    signing.key.write_text("not a key")
    env = farm_environ(FARM_HOME=str(farm_home), **signing.environ())
    started = run_farm("worker", "--gpu", "cpu", env=env, timeout=120)
    assert started.returncode == 2, started.stdout + started.stderr
    assert f"error: c2pa_private_key_path: {signing.key} is not a PEM file" in started.stderr


def test_show_names_the_file_it_cannot_read(tmp_path):
    env = farm_environ(FARM_HOME=str(tmp_path / "home"))
    missing = run_farm("provenance", "show", str(tmp_path / "nope.png"), env=env)
    assert missing.returncode == 2 and "error: FILE: cannot read" in missing.stderr
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    unreadable = run_farm("provenance", "show", str(text), env=env)
    assert unreadable.returncode == 2 and "error: FILE:" in unreadable.stderr and "not a readable PNG" in unreadable.stderr
