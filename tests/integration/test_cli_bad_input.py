"""Every bad input to `farm render` gets exit code 2, a message naming the field, and no writes."""

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from farm.cli import main
from farm.db.models import Job, Render
from farm.db.session import transaction


def _invoke(args, home, **env):
    return CliRunner().invoke(main, args, env={"FARM_HOME": str(home), **env})


@pytest.mark.parametrize("flags, named", [
    (["--size", "100x64"], "--size (width)"),
    (["--size", "64x2056"], "--size (height)"),
    (["--size", "big"], "--size"),
    (["--steps", "0"], "--steps"),
    (["--steps", "151"], "--steps"),
    (["--cfg", "-1"], "--cfg (cfg_scale)"),
    (["--cfg", "30.5"], "--cfg (cfg_scale)"),
    (["--sampler", "Euler z"], "--sampler"),
    (["-n", "0"], "-n/--count"),
    (["-n", "65"], "-n/--count"),
    (["--seed", "-1"], "--seed"),
    (["--priority", "12"], "--priority"),
])
def test_bad_flag_before_any_database_exists(tmp_path, flags, named):
    home = tmp_path / "farm-data"
    result = _invoke(["render", "a lighthouse", *flags], home)
    assert result.exit_code == 2, result.output
    assert f"error: {named}:" in result.stderr
    assert not home.exists()  # checked before the database or storage was even created


def test_empty_prompt(tmp_path):
    result = _invoke(["render", "   "], tmp_path / "farm-data")
    assert result.exit_code == 2
    assert "error: PROMPT (prompt):" in result.stderr


def test_malformed_config_names_the_key(tmp_path):
    config = tmp_path / "farm.yaml"
    config.write_text("web_port: [\n")
    result = _invoke(["render", "a lighthouse"], tmp_path / "farm-data", FARM_CONFIG=str(config))
    assert result.exit_code == 2
    assert str(config) in result.stderr


def test_bad_environment_setting_names_the_variable(tmp_path):
    result = _invoke(["jobs", "show", "1"], tmp_path / "farm-data", FARM_STORAGE_URL="ftp://x")
    assert result.exit_code == 2
    assert "error: FARM_STORAGE_URL:" in result.stderr


def test_unknown_model_writes_nothing(embedded_farm):
    home = embedded_farm.settings.home
    result = _invoke(["render", "a lighthouse", "--model", "sd-xl-missing", "--size", "64x64"], home)
    assert result.exit_code == 2
    assert "error: --model:" in result.stderr and "tiny-sd" in result.stderr
    with transaction(embedded_farm.session_factory) as session:
        assert session.scalar(select(func.count(Job.id))) == 0
        assert session.scalar(select(func.count(Render.id))) == 0
    assert not any(path.is_file() for path in (home / "objects").rglob("*"))


def test_unknown_job(embedded_farm):
    result = _invoke(["jobs", "show", "999"], embedded_farm.settings.home)
    assert result.exit_code == 2
    assert "error: job_id:" in result.stderr


def test_bad_worker_flags(tmp_path):
    assert "error: --gpu:" in _invoke(["worker", "--gpu", "first"], tmp_path).stderr
    assert "error: --queues:" in _invoke(["worker", "--queues", "sd1,flux"], tmp_path).stderr


def test_a_gpu_that_does_not_exist_stops_the_worker_with_a_clear_message(tmp_path):
    from tests.fixtures.processes import farm_environ, run_farm

    result = run_farm("worker", "--gpu", "99", env=farm_environ(FARM_HOME=str(tmp_path / "farm-data")))
    assert result.returncode == 2
    assert "error: --gpu: GPU 99 does not exist" in result.stderr


def test_job_control_of_an_unknown_job(embedded_farm):
    for action in ("pause", "resume", "cancel"):
        result = _invoke(["jobs", action, "4242"], embedded_farm.settings.home)
        assert result.exit_code == 2 and "error: job_id: no job 4242" in result.stderr
