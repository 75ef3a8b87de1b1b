"""Browser fixtures: a live farm served the way a user runs it (`farm up` on the embedded default:
SQLite, folder storage, in-process worker, tiny model) and Debian's Chromium, headless, driven by
Playwright. Nothing is downloaded: Playwright drives the system Chromium through
`executable_path`, and the tiny model is copied into FARM_HOME/models.

Chromium or Playwright missing fails the test, never skips it: CI must prove the real thing
(.ci/services installs Debian's `chromium`).

Artifacts: every screenshot a test takes is kept in
`test-artifacts/browser/<test name>/NN-step.png` under the repository root (or under
$RENDERFARM_TEST_ARTIFACTS/<test name>), after the run, passed or failed. On failure the folder
also gets the page's HTML, a last screenshot and the `farm up` log.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

try:
    from playwright.sync_api import expect
except ImportError as missing:  # an error, not a skip: CI must prove the real thing
    raise ImportError("Playwright is required for the browser tests: .venv/bin/pip install -e '.[test]' "
                      "(playwright==1.65.2; it drives the system Chromium, no browser download)") from missing

from tests.fixtures.processes import farm_environ, farm_process, free_port, wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("RENDERFARM_TEST_CHROMIUM", "/usr/bin/chromium")
# The CPU tiny model on a small shared machine is slow: waits are explicit and generous.
ACTION_TIMEOUT_MS = 30_000
STARTUP_SECONDS = 180


def artifacts_root() -> Path:
    configured = os.environ.get("RENDERFARM_TEST_ARTIFACTS")
    return Path(configured) if configured else REPO_ROOT / "test-artifacts" / "browser"


# -- test outcome, for keeping more evidence on failure --------------------------------------

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


def _failed(request) -> bool:
    return any(getattr(getattr(request.node, f"report_{when}", None), "failed", False)
               for when in ("setup", "call"))


@pytest.fixture
def artifacts(request) -> Path:
    """This test's own artifacts folder, emptied at the start (screenshots of an earlier run of
    the same test would mix with this one's) and kept afterwards."""
    folder = artifacts_root() / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


# -- the live farm ------------------------------------------------------------------------------

@dataclass
class LiveFarm:
    url: str
    home: Path
    env: dict[str, str]
    log_path: Path
    admin_name: str
    admin_password: str
    process: subprocess.Popen

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).ok
    except requests.RequestException:
        return False


@pytest.fixture
def live_farm(farm_home, tmp_path, artifacts, request) -> LiveFarm:
    """`farm up` in a child process on a free port, FARM_HOME in a temp folder, signed in as
    nobody; the first-run admin's password read from FARM_HOME/initial-admin-password."""
    port = free_port()
    env = farm_environ(FARM_HOME=str(farm_home), FARM_WEB_HOST="127.0.0.1", FARM_WEB_PORT=str(port))
    log_path = tmp_path / "farm-up.log"
    url = f"http://127.0.0.1:{port}"
    with farm_process("up", env=env, log_path=log_path) as process:
        def ready():
            if process.poll() is not None:
                raise AssertionError(f"farm up exited with {process.returncode}:\n{log_path.read_text()}")
            return _answers(url + "/healthz")

        wait_until(ready, STARTUP_SECONDS, "farm up to serve the dashboard")
        password = (farm_home / "initial-admin-password").read_text().strip()
        farm = LiveFarm(url=url, home=farm_home, env=env, log_path=log_path,
                        admin_name="admin", admin_password=password, process=process)
        yield farm
    if _failed(request):
        shutil.copy(log_path, artifacts / "farm-up.log")


# -- the browser -------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium, headless, through Playwright (session-wide: one start for all tests)."""
    from playwright.sync_api import sync_playwright

    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"Chromium is required at {CHROMIUM} for the browser tests "
                    "(Debian package `chromium`; bash .ci/services installs it)", pytrace=False)
    with sync_playwright() as playwright:
        try:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        except Exception as error:  # Playwright raises its own Error with Chromium's output
            pytest.fail(f"Chromium at {CHROMIUM} did not start under Playwright: {error}", pytrace=False)
        yield chromium
        chromium.close()


@dataclass
class Steps:
    """Screenshots numbered in the order the test takes them: NN-step.png in the artifacts folder."""
    page: object
    folder: Path
    taken: list[Path] = field(default_factory=list)

    def shot(self, name: str, full_page: bool = True) -> Path:
        path = self.folder / f"{len(self.taken) + 1:02d}-{re.sub(r'[^A-Za-z0-9_-]+', '-', name)}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        self.taken.append(path)
        return path


@dataclass
class BrowserProblems:
    """What the page complained about: uncaught script errors, console errors (a Content-Security
    -Policy violation shows up here), failed requests and HTTP errors of the farm's own URLs."""
    messages: list[str] = field(default_factory=list)


@pytest.fixture
def page(browser, live_farm, artifacts, request):
    """A fresh browser context (its own cookies) on the live farm; downloads accepted."""
    expect.set_options(timeout=ACTION_TIMEOUT_MS)
    context = browser.new_context(base_url=live_farm.url, accept_downloads=True,
                                  viewport={"width": 1280, "height": 900})
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    tab = context.new_page()
    problems = BrowserProblems()
    tab.on("pageerror", lambda error: problems.messages.append(f"script error: {error}"))
    tab.on("console", lambda message: message.type == "error"
           and problems.messages.append(f"console error: {message.text} ({message.location.get('url')})"))
    tab.on("response", lambda response: response.status >= 400
           and problems.messages.append(f"HTTP {response.status}: {response.request.method} {response.url}"))
    tab.problems = problems
    yield tab
    if _failed(request):
        try:
            (artifacts / "failure.html").write_text(tab.content())
            tab.screenshot(path=str(artifacts / "failure.png"), full_page=True)
        except Exception as error:  # the page may be gone; the log still tells what happened
            (artifacts / "failure.txt").write_text(f"could not save the page: {error}\n")
        if problems.messages:
            (artifacts / "browser-problems.txt").write_text("\n".join(problems.messages) + "\n")
    context.close()


@pytest.fixture
def steps(page, artifacts) -> Steps:
    return Steps(page, artifacts)
