"""The `secret_key` setting: generated and kept on the embedded farm, required on PostgreSQL."""

from __future__ import annotations

import stat

import pytest

from dashboard.app import create_app
from farm.context import FarmContext
from farm.settings import DEFAULT_CONFIG, SettingsError, load_settings, web_secret_key

PRODUCTION = str(DEFAULT_CONFIG.parent / "production.yaml")


def test_embedded_farm_generates_a_private_key_once_and_reuses_it(tmp_path):
    settings = load_settings({"FARM_HOME": str(tmp_path / "home")})
    first = web_secret_key(settings)
    key_file = settings.secret_key_file
    assert len(first) >= 32
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert web_secret_key(load_settings({"FARM_HOME": str(tmp_path / "home")})) == first
    assert web_secret_key(load_settings({"FARM_HOME": str(tmp_path / "other")})) != first


def test_given_key_wins(tmp_path):
    settings = load_settings({"FARM_HOME": str(tmp_path), "FARM_SECRET_KEY": "s" * 32})
    assert web_secret_key(settings) == "s" * 32
    assert not settings.secret_key_file.exists()


def test_short_key_is_refused_naming_the_variable_without_echoing_it():
    with pytest.raises(SettingsError) as caught:
        load_settings({"FARM_SECRET_KEY": "hunter2-but-longer"})
    assert caught.value.field == "FARM_SECRET_KEY"
    assert "at least 32 characters" in caught.value.message
    assert "hunter2" not in str(caught.value)


def test_production_config_requires_the_key():
    settings = load_settings({"FARM_CONFIG": PRODUCTION})
    with pytest.raises(SettingsError) as caught:
        web_secret_key(settings)
    assert caught.value.field == "FARM_SECRET_KEY"
    assert "required" in caught.value.message
    key = "p" * 40
    assert web_secret_key(load_settings({"FARM_CONFIG": PRODUCTION, "FARM_SECRET_KEY": key})) == key
    assert load_settings({"FARM_CONFIG": PRODUCTION}).session_cookie_secure is True


def test_dashboard_on_postgres_does_not_start_without_the_key(tmp_path):
    settings = load_settings({"FARM_HOME": str(tmp_path), "FARM_DATABASE_URL": "postgresql://farm@127.0.0.1/none"})
    with pytest.raises(SettingsError, match="FARM_SECRET_KEY"):
        create_app(FarmContext(settings))


def test_a_truncated_key_file_is_reported_not_silently_replaced(tmp_path):
    settings = load_settings({"FARM_HOME": str(tmp_path)})
    settings.secret_key_file.write_text("short\n")
    with pytest.raises(SettingsError) as caught:
        web_secret_key(settings)
    assert caught.value.field == str(settings.secret_key_file)


def test_sessions_survive_a_restart_of_the_embedded_dashboard(embedded_farm):
    from tests.dashboard.conftest import login_as, make_app

    first = make_app(embedded_farm).test_client()
    login_as(first, "reviewer")
    cookie = first.get_cookie("farm_session").value
    second = make_app(FarmContext(embedded_farm.settings)).test_client()
    second.set_cookie("farm_session", cookie)
    assert second.get("/").status_code == 200
