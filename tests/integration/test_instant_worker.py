"""A `farm worker` process on the instant engine (FARM_RENDER_ENGINE=instant) completes a job on
the distributed setup: Postgres, Redis, a SeaweedFS S3 server, a real worker process."""

import io
import json

import pytest
import redis
from PIL import Image
from sqlalchemy import select

from farm.context import FarmContext
from farm.db.models import Job, Render, Worker
from farm.db.session import transaction
from farm.jobs.dispatch import submit_prompt
from farm.render.instant import seed_colour
from farm.render.png import read_png_text
from farm.settings import load_settings
from tests.fixtures.processes import farm_environ, farm_process, run_farm, wait_until

pytestmark = pytest.mark.integration


def test_instant_worker_completes_a_job_with_solid_images_in_s3(farm_home, tmp_path, postgres_url, redis_url,
                                                               s3_server, s3_bucket):
    redis.Redis.from_url(redis_url).flushdb()  # no messages left over from an earlier test
    settings = {
        "FARM_HOME": str(farm_home), "FARM_DATABASE_URL": postgres_url, "FARM_BROKER_URL": redis_url,
        "FARM_STORAGE_URL": f"s3://{s3_bucket}/instant", "FARM_S3_ENDPOINT_URL": s3_server.endpoint_url,
        "FARM_S3_REGION": s3_server.region, "FARM_S3_ACCESS_KEY_ID": s3_server.access_key_id,
        "FARM_S3_SECRET_ACCESS_KEY": s3_server.secret_access_key, "FARM_HEARTBEAT_SECONDS": "1",
    }
    env = farm_environ(**settings)
    upgraded = run_farm("db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    ctx = FarmContext(load_settings(settings))
    try:
        # The submitting side has no FARM_RENDER_ENGINE: only the worker's setting matters.
        job_id = submit_prompt(ctx, prompt="a lighthouse at dusk", seed=40, count=3,
                               params={"steps": 6, "width": 96, "height": 64})
        worker_env = farm_environ(**settings, FARM_RENDER_ENGINE="instant")
        log_path = tmp_path / "worker.log"
        with farm_process("worker", "--gpu", "cpu", "--name", "box:instant", env=worker_env, log_path=log_path):
            def job_finished():
                with transaction(ctx.session_factory) as session:
                    return session.get(Job, job_id).status in ("succeeded", "failed")

            try:
                wait_until(job_finished, 120, "the job to finish")
            except AssertionError as error:
                raise AssertionError(f"{error}; worker log:\n{log_path.read_text()[-3000:]}") from None

            # The heartbeat publishes the model the instant engine "holds", as a real one would
            # (warm-model routing reads it). Read from the registry table, where heartbeats land.
            def warm_models():
                with transaction(ctx.session_factory) as session:
                    return session.scalar(select(Worker.warm_models).where(Worker.name == "box:instant"))

            assert wait_until(warm_models, 30, "the warm model to be reported") == ["tiny-sd"]

        with transaction(ctx.session_factory) as session:
            assert session.get(Job, job_id).status == "succeeded", log_path.read_text()[-3000:]
            renders = session.scalars(select(Render).where(Render.job_id == job_id).order_by(Render.index)).all()
            assert [(r.state, r.rendered_by, r.progress_step) for r in renders] == [("succeeded", "box:instant", 6)] * 3
            stored = [(r.id, r.params["seed"], r.asset.storage_key, r.asset.thumbnail_key) for r in renders]
        for render_id, seed, key, thumbnail_key in stored:
            png = ctx.storage.get(key)
            image = Image.open(io.BytesIO(png))
            # A solid image in its seed's colour: the instant engine made it, not the tiny model.
            assert image.size == (96, 64) and image.convert("RGB").getcolors() == [(96 * 64, seed_colour(seed))]
            text = read_png_text(png)
            assert f"Seed: {seed}, Size: 96x64" in text["parameters"]
            assert json.loads(text["farm"])["render_id"] == render_id
            assert ctx.storage.get(thumbnail_key)
    finally:
        ctx.db_engine.dispose()
