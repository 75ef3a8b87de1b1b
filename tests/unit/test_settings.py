from pathlib import Path

import pytest

from farm.settings import DEFAULT_CONFIG, SettingsError, load_settings


def test_embedded_defaults_live_under_home(tmp_path):
    settings = load_settings({"FARM_HOME": str(tmp_path)})
    assert settings.home == tmp_path.resolve()
    assert settings.database_url == f"sqlite:///{tmp_path.resolve()}/farm.sqlite3"
    assert settings.storage_url == f"file://{tmp_path.resolve()}/objects"
    assert settings.uses_embedded_broker
    assert settings.embedded_broker_dir == tmp_path.resolve() / "broker"


def test_default_home_is_farm_data_in_the_working_directory(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert load_settings({}).home == tmp_path.resolve() / "farm-data"


def test_environment_overrides_the_file_and_is_typed():
    settings = load_settings({
        "FARM_DATABASE_URL": "postgresql://farm@db/farm",
        "FARM_BROKER_URL": "redis://localhost:6379/0",
        "FARM_STORAGE_URL": "s3://bucket/prefix",
        "FARM_S3_ENDPOINT_URL": "http://127.0.0.1:8333",
        "FARM_WEB_PORT": "9000",
    })
    assert settings.web_port == 9000
    assert settings.database_url == "postgresql://farm@db/farm"
    assert not settings.uses_embedded_broker


def test_production_config_names_postgres_redis_and_s3():
    settings = load_settings({"FARM_CONFIG": str(DEFAULT_CONFIG.parent / "production.yaml")})
    assert settings.database_url.startswith("postgresql")
    assert settings.broker_url.startswith("redis://")
    assert settings.storage_url.startswith("s3://")


@pytest.mark.parametrize("key, value, fragment", [
    ("FARM_WEB_PORT", "eighty", "integer"),
    ("FARM_WEB_PORT", "70000", "65535"),
    ("FARM_DATABASE_URL", "mysql://x/y", "sqlite"),
    ("FARM_BROKER_URL", "kafka://x", "redis"),
    ("FARM_STORAGE_URL", "file://relative/path", "absolute"),
    ("FARM_STORAGE_URL", "s3://", "bucket"),
    ("FARM_STORAGE_URL", "ftp://host/x", "file:///path"),
    ("FARM_S3_ENDPOINT_URL", "localhost:8333", "http"),
    ("FARM_DEVICE", "tpu", "auto"),
    ("FARM_MAX_ATTEMPTS", "0", "greater than or equal"),
    ("FARM_LEASE_SECONDS", "soon", "integer"),
])
def test_bad_environment_value_names_the_variable(key, value, fragment):
    with pytest.raises(SettingsError) as caught:
        load_settings({key: value})
    assert caught.value.field == key
    assert fragment in caught.value.message


def test_unknown_farm_variable_is_refused():
    with pytest.raises(SettingsError) as caught:
        load_settings({"FARM_DATABSE_URL": "sqlite:///x"})
    assert caught.value.field == "FARM_DATABSE_URL"


def _config(tmp_path: Path, text: str) -> dict[str, str]:
    path = tmp_path / "farm.yaml"
    path.write_text(text)
    return {"FARM_CONFIG": str(path)}


def test_bad_value_in_config_file_names_file_and_key(tmp_path):
    with pytest.raises(SettingsError) as caught:
        load_settings(_config(tmp_path, "web_port: -1\n"))
    assert caught.value.field == f"{tmp_path / 'farm.yaml'}: web_port"


def test_misspelt_key_in_config_file_is_refused(tmp_path):
    with pytest.raises(SettingsError) as caught:
        load_settings(_config(tmp_path, "databse_url: sqlite:///x\n"))
    assert caught.value.field.endswith("databse_url")
    assert "not permitted" in caught.value.message


@pytest.mark.parametrize("text", ["web_port: [1,\n", "- just\n- a list\n"])
def test_malformed_config_file_is_refused(tmp_path, text):
    with pytest.raises(SettingsError) as caught:
        load_settings(_config(tmp_path, text))
    assert str(tmp_path / "farm.yaml") in caught.value.field


def test_missing_config_file_is_refused(tmp_path):
    with pytest.raises(SettingsError) as caught:
        load_settings({"FARM_CONFIG": str(tmp_path / "nope.yaml")})
    assert caught.value.field == "FARM_CONFIG"
