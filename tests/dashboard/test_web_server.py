"""`farm web`: the dashboard and API under gunicorn, as a real child process."""

from __future__ import annotations

import re

import requests
from click.testing import CliRunner

from farm.cli import main

from tests.fixtures.processes import farm_environ, farm_process, free_port, run_farm, wait_until

PASSWORD = "a long enough password"


def test_farm_web_serves_pages_static_files_and_the_api(farm_home, tmp_path):
    port = free_port()
    env = farm_environ(FARM_HOME=str(farm_home), FARM_WEB_PORT=str(port))
    base = f"http://127.0.0.1:{port}"
    created = CliRunner().invoke(main, ["users", "create", "root", "--role", "admin", "--password-stdin", "--token"],
                                 env={"FARM_HOME": str(farm_home)}, input=PASSWORD + "\n")
    assert created.exit_code == 0, created.output
    token = created.stdout.strip().splitlines()[-1]

    def healthy():
        try:
            return requests.get(base + "/healthz", timeout=2).ok
        except requests.ConnectionError:
            return False

    with farm_process("web", "--workers", "1", env=env, log_path=tmp_path / "web.log"):
        wait_until(healthy, 120, "farm web to answer")
        browser = requests.Session()
        form = browser.get(base + "/login", timeout=5)
        assert form.headers["Server"].startswith("gunicorn")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
        signed_in = browser.post(base + "/login", data={"csrf_token": csrf, "name": "root", "password": PASSWORD},
                                 allow_redirects=False, timeout=5)
        assert signed_in.status_code == 302
        assert "HttpOnly" in signed_in.headers["Set-Cookie"]
        home = browser.get(base + "/", timeout=5)
        assert home.status_code == 200 and "root" in home.text
        css = browser.get(base + "/static/farm.css", timeout=5)
        assert css.status_code == 200 and css.headers["Content-Type"].startswith("text/css")
        me = requests.get(base + "/api/v1/me", headers={"Authorization": f"Bearer {token}"}, timeout=5)
        assert me.json()["name"] == "root"
    assert "Booting worker" in (tmp_path / "web.log").read_text()


def test_farm_web_on_postgres_without_a_secret_key_does_not_start(tmp_path):
    env = farm_environ(FARM_HOME=str(tmp_path), FARM_DATABASE_URL="postgresql://farm@127.0.0.1:1/none")
    result = run_farm("web", env=env, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("error: FARM_SECRET_KEY: is required")
