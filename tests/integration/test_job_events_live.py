"""A job's live progress from real servers over real HTTP.

- waitress, the server `farm up` runs, on a thread of this test, with an in-process worker
  rendering a small job on the tiny model: the event stream shows the job from queued to 100%
  and ends; another request is answered while the stream is open.
- gunicorn (`farm web`, gthread workers) in a child process: two streams stay open while pages,
  JSON progress and the API answer at once; cancelling the job ends both streams.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field

import pytest
import requests
from waitress import create_server

from dashboard.app import create_app
from farm.accounts.service import issue_api_token
from farm.context import FarmContext, prepare_database
from farm.db.session import transaction
from farm.queue.worker import in_process_worker
from farm.settings import load_settings
from tests.dashboard.conftest import PASSWORD, TEST_CONFIG, add_user
from tests.dashboard.job_helpers import make_campaign, submit
from tests.fixtures.processes import farm_environ, farm_process, free_port, wait_until


@dataclass
class StreamReader:
    """Reads an event stream on a thread, keeping each `progress` event with when it came."""

    session: requests.Session
    url: str
    events: list = field(default_factory=list)
    status: int | None = None
    headers: dict = field(default_factory=dict)
    ended: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None

    def start(self) -> "StreamReader":
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        try:
            with self.session.get(self.url, stream=True, timeout=(5, 120)) as response:
                self.status, self.headers = response.status_code, dict(response.headers)
                fields: dict[str, str] = {}
                for line in response.iter_lines(decode_unicode=True):
                    if line:
                        if not line.startswith(":"):
                            name, _, value = line.partition(": ")
                            fields[name] = value
                        continue
                    if fields.get("event") == "progress":
                        self.events.append((time.monotonic(), json.loads(fields["data"])))
                    fields = {}
        except BaseException as error:  # noqa: BLE001  (reported by the test)
            self.error = error
        finally:
            self.ended.set()

    def wait_for_events(self, count: int, timeout: float) -> None:
        wait_until(lambda: len(self.events) >= count or self.ended.is_set(), timeout, f"{count} progress events")


def _sign_in(base: str, name: str) -> requests.Session:
    session = requests.Session()
    form = session.get(base + "/login", timeout=10)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    signed_in = session.post(base + "/login", data={"csrf_token": csrf, "name": name, "password": PASSWORD},
                             allow_redirects=False, timeout=10)
    assert signed_in.status_code == 302, signed_in.text
    return session


def _timed_get(session: requests.Session, url: str) -> tuple[requests.Response, float]:
    started = time.monotonic()
    response = session.get(url, timeout=10)
    return response, time.monotonic() - started


@pytest.fixture
def waitress_farm(embedded_farm):
    """The dashboard under waitress (as `farm up` serves it: 8 threads) on a free port."""
    app = create_app(embedded_farm, {**TEST_CONFIG, "CHECK_API_RESPONSES": False, "JOB_EVENTS_POLL_SECONDS": 0.2})
    server = create_server(app, host="127.0.0.1", port=0, threads=8)
    thread = threading.Thread(target=server.run, name="waitress", daemon=True)
    thread.start()
    yield embedded_farm, f"http://127.0.0.1:{server.effective_port}"
    server.task_dispatcher.shutdown(timeout=5)
    server.close()


def test_waitress_streams_a_job_rendered_by_the_in_process_worker_to_100_percent(waitress_farm):
    farm, base = waitress_farm
    manager = add_user(farm, "campaign_manager", name="ana")
    campaign_id, version_id = make_campaign(farm, manager, steps=3)
    job_id = submit(farm, manager, campaign_id, version_id, products=["a cup", "a pot", "a pan"])
    browser = _sign_in(base, "ana")

    page = browser.get(f"{base}/jobs/{job_id}", timeout=10)
    assert page.headers["Server"] == "waitress"
    cursor = re.search(r'data-cursor="([^"]+)"', page.text).group(1)
    stream = StreamReader(browser, f"{base}/jobs/{job_id}/events?since={cursor}").start()
    stream.wait_for_events(1, 15)
    assert stream.status == 200 and stream.headers["Content-Type"].startswith("text/event-stream")
    opening = stream.events[0][1]
    assert opening["job"]["status"] == "queued" and opening["job"]["percent"] == 0
    assert "no live worker" in opening["job"]["waiting_reason"]

    # The open stream holds one of waitress's threads, not the server.
    other, seconds = _timed_get(browser, f"{base}/jobs/")
    assert other.status_code == 200 and seconds < 3, seconds

    with in_process_worker(farm.celery):
        assert stream.ended.wait(120), f"the stream did not end; events so far: {stream.events}"
    assert stream.error is None, stream.error

    events = [data for _, data in stream.events]
    percents = [e["job"]["percent"] for e in events]
    assert percents == sorted(percents) and percents[-1] == 100, percents
    last = events[-1]["job"]
    assert (last["status"], last["done"], last["finished"], last["renders"]) == ("succeeded", True, 3, 3)
    assert len(events) >= 3, events  # the opening, progress on the way, the end
    final = {}
    for event in events:
        for render in event["renders"]:
            final[render["id"]] = render
    assert len(final) == 3 and all(r["state"] == "succeeded" and r["percent"] == 100 for r in final.values())
    for render in final.values():
        thumbnail = browser.get(base + render["thumbnail_url"], timeout=10)
        assert thumbnail.status_code == 200 and thumbnail.headers["Content-Type"] == "image/webp"
    # Each event carried only renders that changed: no render twice in the same state.
    sent = [(r["id"], r["state"], r["progress_step"]) for e in events for r in e["renders"]]
    assert len(sent) == len(set(sent)), sent

    done_page = browser.get(f"{base}/jobs/{job_id}", timeout=10).text
    assert re.search(r'data-testid="job-progress"[^>]*aria-valuenow="100"', done_page)
    assert 'data-done="true"' in done_page


def test_gunicorn_keeps_answering_while_streams_are_open_and_ends_them_on_cancel(farm_home, tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    farm = FarmContext(load_settings({"FARM_HOME": str(farm_home)}))
    prepare_database(farm)
    manager = add_user(farm, "campaign_manager", name="ana")
    campaign_id, version_id = make_campaign(farm, manager)
    job_id = submit(farm, manager, campaign_id, version_id)
    with transaction(farm.session_factory) as session:
        token = issue_api_token(session, manager)
    farm.db_engine.dispose()

    def healthy():
        try:
            return requests.get(base + "/healthz", timeout=2).ok
        except requests.ConnectionError:
            return False

    env = farm_environ(FARM_HOME=str(farm_home), FARM_WEB_PORT=str(port))
    with farm_process("web", "--workers", "1", env=env, log_path=tmp_path / "web.log"):
        wait_until(healthy, 120, "farm web to answer")
        browser = _sign_in(base, "ana")
        streams = [StreamReader(browser, f"{base}/jobs/{job_id}/events").start() for _ in range(2)]
        for stream in streams:
            stream.wait_for_events(1, 15)  # sent at once, not held back in a buffer
            assert stream.status == 200 and stream.headers["Server"].startswith("gunicorn")
            assert not stream.ended.is_set()

        for url in ("/healthz", f"/jobs/{job_id}", f"/jobs/{job_id}/progress.json", "/jobs/"):
            response, seconds = _timed_get(browser, base + url)
            assert response.status_code == 200 and seconds < 3, (url, seconds)

        cancelled = requests.post(f"{base}/api/v1/jobs/{job_id}/cancel", headers={"Authorization": f"Bearer {token}"},
                                  timeout=10)
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        for stream in streams:
            assert stream.ended.wait(15), "the stream did not end after the cancel"
            assert stream.error is None, stream.error
            last = stream.events[-1][1]["job"]
            assert (last["status"], last["done"], last["percent"]) == ("cancelled", True, 100)
