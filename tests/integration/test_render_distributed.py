"""The same render path on the distributed setup: Postgres, a real broker (Redis or RabbitMQ),
a real S3 server (SeaweedFS) and a separate `farm worker` process."""

import io
import shutil
import json

import boto3
import pytest
import redis
from PIL import Image
from sqlalchemy import select

from farm.context import FarmContext
from farm.db.models import Asset, Job, Render
from farm.db.session import transaction
from farm.render.png import read_png_text
from farm.settings import load_settings
from tests.fixtures.processes import farm_environ, farm_process, run_farm

pytestmark = pytest.mark.integration


@pytest.fixture(params=["redis", "rabbitmq"])
def broker_url(request):
    url = request.getfixturevalue(f"{request.param}_url")
    if request.param == "redis":
        redis.Redis.from_url(url).flushdb()  # no messages left over from an earlier run
    return url


def test_render_on_postgres_broker_and_s3(farm_home, tmp_path, postgres_url, broker_url, s3_server, s3_bucket):
    settings = {
        "FARM_HOME": str(farm_home),
        "FARM_DATABASE_URL": postgres_url,
        "FARM_BROKER_URL": broker_url,
        "FARM_STORAGE_URL": f"s3://{s3_bucket}/renders",
        "FARM_S3_ENDPOINT_URL": s3_server.endpoint_url,
        "FARM_S3_REGION": s3_server.region,
        "FARM_S3_ACCESS_KEY_ID": s3_server.access_key_id,
        "FARM_S3_SECRET_ACCESS_KEY": s3_server.secret_access_key,
    }
    env = farm_environ(**settings)
    upgraded = run_farm("db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr

    out = tmp_path / "out"
    with farm_process("worker", "--gpu", "cpu", env=env, log_path=tmp_path / "worker.log"):
        result = run_farm("render", "a lighthouse at dusk", "-n", "2", "--seed", "1234", "--steps", "4",
                          "--size", "96x64", "--out", str(out), env=env)
    assert result.returncode == 0, result.stderr + (tmp_path / "worker.log").read_text()[-3000:]
    paths = result.stdout.split()
    assert len(paths) == 2

    ctx = FarmContext(load_settings(settings))
    s3 = boto3.client("s3", endpoint_url=s3_server.endpoint_url, region_name=s3_server.region,
                      aws_access_key_id=s3_server.access_key_id,
                      aws_secret_access_key=s3_server.secret_access_key)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket).get("Contents", [])}
    with transaction(ctx.session_factory) as session:
        assert ctx.db_engine.dialect.name == "postgresql"
        job = session.scalars(select(Job)).one()
        assert job.status == "succeeded"
        renders = session.scalars(select(Render).order_by(Render.index)).all()
        assert [r.params["seed"] for r in renders] == [1234, 1235]
        assert all(r.lease_owner is None and r.state == "succeeded" for r in renders)
        assets = session.scalars(select(Asset)).all()
        assert keys == {f"renders/{a.storage_key}" for a in assets} | {f"renders/{a.thumbnail_key}" for a in assets}
        for path, render in zip(paths, renders):
            data = open(path, "rb").read()
            assert data == s3.get_object(Bucket=s3_bucket, Key=f"renders/{render.asset.storage_key}")["Body"].read()
            text = read_png_text(data)
            assert f"Seed: {render.params['seed']}, Size: 96x64, Model hash: {job.model.sha256[:10]}" in text["parameters"]
            assert json.loads(text["farm"])["render_id"] == render.id
            assert Image.open(io.BytesIO(data)).size == (96, 64)

    # Same seed, same machine, same pixels: the embedded farm agrees with the distributed one.
    embedded_env = farm_environ(FARM_HOME=str(tmp_path / "embedded"))
    shutil.copytree(farm_home / "models", tmp_path / "embedded" / "models")
    alone = run_farm("render", "a lighthouse at dusk", "--seed", "1235", "--steps", "4", "--size", "96x64",
                     "--out", str(tmp_path / "alone"), env=embedded_env)
    assert alone.returncode == 0, alone.stderr
    assert Image.open(alone.stdout.split()[0]).tobytes() == Image.open(paths[1]).tobytes()
