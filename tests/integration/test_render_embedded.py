"""The render path end to end on the embedded default (SQLite + folder + embedded broker),
through the real `farm` command in child processes."""

import io
import json

from PIL import Image
from sqlalchemy import select

from farm.context import FarmContext
from farm.db.models import Job, Render
from farm.db.session import transaction
from farm.render.png import read_png_text
from farm.settings import load_settings
from tests.fixtures.processes import farm_environ, farm_process, free_port, run_farm, wait_until

PROMPT = "a lighthouse at dusk"
RENDER_FLAGS = ("--steps", "4", "--size", "64x64", "--sampler", "DPM++ 2M Karras")


def _pixels(path) -> bytes:
    return Image.open(path).convert("RGB").tobytes()


def _render(env, out, *extra):
    result = run_farm("render", PROMPT, *RENDER_FLAGS, "--out", str(out), *extra, env=env)
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if line.strip()]


def test_farm_render_end_to_end(farm_home, tmp_path):
    env = farm_environ(FARM_HOME=str(farm_home))
    paths = _render(env, tmp_path / "out", "-n", "4", "--seed", "42", "--negative", "fog")
    assert len(paths) == 4
    images = [Image.open(p) for p in paths]
    assert all(image.size == (64, 64) for image in images)

    text = read_png_text(open(paths[2], "rb").read())
    farm_chunk = json.loads(text["farm"])
    ctx = FarmContext(load_settings({"FARM_HOME": str(farm_home)}))
    with transaction(ctx.session_factory) as session:
        job = session.scalars(select(Job)).one()
        assert job.status == "succeeded"
        renders = session.scalars(select(Render).order_by(Render.index)).all()
        assert [r.state for r in renders] == ["succeeded"] * 4
        assert [r.params["seed"] for r in renders] == [42, 43, 44, 45]
        model = job.model
        assert text["parameters"] == (
            f"{PROMPT}\nNegative prompt: fog\n"
            f"Steps: 4, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 44, Size: 64x64, "
            f"Model hash: {model.sha256[:10]}, Model: tiny-sd"
        )
        assert farm_chunk["render_id"] == renders[2].id
        assert farm_chunk["job_id"] == job.id
        assert farm_chunk["model_sha256"] == model.sha256
        assert farm_chunk["license"] == "Apache-2.0"
        for render in renders:
            asset = render.asset
            stored = ctx.storage.get(asset.storage_key)
            assert asset.sha256 in asset.storage_key
            assert Image.open(io.BytesIO(ctx.storage.get(asset.thumbnail_key))).size[0] <= 256
            assert len(stored) == asset.size_bytes
    objects = list((farm_home / "objects").rglob("*.*"))
    assert len(objects) == 8  # four images and four thumbnails, nothing else

    # Determinism and AUTOMATIC1111's seed+i: image 2 of the batch is the lone render of seed 44.
    again = _render(env, tmp_path / "again", "--seed", "44", "--negative", "fog")
    assert _pixels(again[0]) == _pixels(paths[2])
    assert _pixels(paths[0]) != _pixels(paths[1])


def test_detached_job_is_rendered_by_a_separate_worker_process(farm_home, tmp_path):
    env = farm_environ(FARM_HOME=str(farm_home))
    submitted = run_farm("render", PROMPT, *RENDER_FLAGS, "-n", "2", "--seed", "5", "--detach", env=env)
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()

    def report():
        shown = run_farm("jobs", "show", job_id, "--json", env=env)
        assert shown.returncode == 0, shown.stderr
        return json.loads(shown.stdout)

    assert report()["status"] == "queued"
    with farm_process("worker", "--gpu", "cpu", env=env, log_path=tmp_path / "worker.log"):
        wait_until(lambda: report()["status"] == "succeeded", 180, "the worker to finish the job")
    final = report()
    assert [r["params"]["seed"] for r in final["renders"]] == [5, 6]
    assert all(r["asset"]["storage_key"].endswith(".png") for r in final["renders"])
    human = run_farm("jobs", "show", job_id, env=env)
    assert f"job {job_id}  succeeded" in human.stdout


def test_farm_up_serves_the_dashboard_and_renders_with_its_worker(farm_home, tmp_path):
    import re
    import stat

    import requests

    port = free_port()
    env = farm_environ(FARM_HOME=str(farm_home), FARM_WEB_PORT=str(port))
    base = f"http://127.0.0.1:{port}"
    browser = requests.Session()

    def get(path):
        try:
            response = browser.get(base + path, timeout=5)
        except OSError:
            return None
        return response.content if response.ok else None

    with farm_process("up", env=env, log_path=tmp_path / "up.log"):
        wait_until(lambda: get("/healthz"), 180, "the dashboard to answer")
        # First run: an admin whose password farm up wrote to a private file, and said where.
        password_file = farm_home / "initial-admin-password"
        assert str(password_file) in (tmp_path / "up.log").read_text()
        assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
        form = browser.get(base + "/login", timeout=5).text
        token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
        signed_in = browser.post(base + "/login", timeout=5, allow_redirects=False, data={
            "csrf_token": token, "name": "admin", "password": password_file.read_text().strip()})
        assert signed_in.status_code == 302, signed_in.text

        submitted = run_farm("render", PROMPT, *RENDER_FLAGS, "--seed", "9", "--detach", env=env)
        assert submitted.returncode == 0, submitted.stderr
        job_id = submitted.stdout.strip()
        wait_until(lambda: json.loads(run_farm("jobs", "show", job_id, "--json", env=env).stdout)["status"]
                   == "succeeded", 180, "farm up's worker to render the job")
        page = get("/").decode()
        thumbnail_key = json.loads(run_farm("jobs", "show", job_id, "--json", env=env).stdout)["renders"][0]["asset"]["thumbnail_key"]
        assert f"/objects/{thumbnail_key}" in page
        assert Image.open(io.BytesIO(get(f"/objects/{thumbnail_key}"))).size[0] <= 256
        assert get("/objects/images/00/00/missing.png") is None
        # Images are for signed-in users only.
        assert requests.get(f"{base}/objects/{thumbnail_key}", timeout=5, allow_redirects=False).status_code == 302
