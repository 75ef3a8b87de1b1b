"""`farm worker --gpus`: supervised worker processes against Postgres and Redis.

This machine has no GPU, so the supervisor here runs `farm worker --gpu cpu` children, built by
the same farm code the CLI uses for GPU children (farm.queue.supervisor.worker_child and
worker_supervisor), from a two-line script.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys

import pytest
import redis
from sqlalchemy import select

from farm.context import FarmContext, prepare_database
from farm.db.models import AuditEvent, Worker
from farm.db.session import transaction
from farm.settings import load_settings
from farm.workers.registry import worker_table
from tests.fixtures.processes import farm_environ, run_farm, wait_until

pytestmark = pytest.mark.integration
HOST = socket.gethostname()

SUPERVISE_CPU_WORKERS = """
import json, sys
from farm.queue.supervisor import worker_child, worker_supervisor
from farm.settings import load_settings
children = [worker_child("cpu", name, queues) for name, queues in json.loads(sys.argv[1])]
sys.exit(worker_supervisor(children, load_settings()).run())
"""


@pytest.fixture
def farm_settings(farm_home, postgres_url, redis_url):
    """A migrated farm on Postgres + Redis (workers need no object store until they render)."""
    redis.Redis.from_url(redis_url).flushdb()
    settings = {
        "FARM_HOME": str(farm_home), "FARM_DATABASE_URL": postgres_url, "FARM_BROKER_URL": redis_url,
        # Long on purpose: a worker killed with -9 then looks alive for 90 s, so its restart gets
        # its name back only because the supervisor marks the dead one offline.
        "FARM_HEARTBEAT_SECONDS": "30",
    }
    ctx = FarmContext(load_settings(settings))
    prepare_database(ctx)
    ctx.db_engine.dispose()
    return settings


class SupervisorProcess:
    def __init__(self, settings, children, log_path):
        self.log_path = log_path
        self.ctx = FarmContext(load_settings(settings))
        with open(log_path, "w") as log:
            self.process = subprocess.Popen([sys.executable, "-c", SUPERVISE_CPU_WORKERS, json.dumps(children)],
                                            env=farm_environ(**settings), stdout=log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text()

    def pids(self, name) -> list[int]:
        return [int(pid) for pid in re.findall(rf"started worker {re.escape(name)} \(pid (\d+)\)", self.log())]

    def ready(self, name) -> bool:
        """Whether the latest process of worker NAME is consuming (Celery logs it, at INFO)."""
        pids = self.pids(name)
        return bool(pids) and f"farm-{pids[-1]}@{name} ready." in self.log()

    def workers(self) -> dict[str, Worker]:
        """The registry's rows by name; fails at once, with the log, if the supervisor has exited."""
        assert self.process.poll() is None, f"the supervisor exited {self.process.returncode}:\n{self.log()}"
        with transaction(self.ctx.session_factory) as session:
            return {w.name: w for w in session.scalars(select(Worker))}

    def stop(self) -> None:
        """Whatever the test did, leave no process behind."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for pid in {pid for name in ("box:a", "box:b") for pid in self.pids(name)}:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.ctx.db_engine.dispose()


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_supervised_workers_register_come_back_after_kill_9_and_stop_on_sigterm(farm_settings, tmp_path):
    supervisor = SupervisorProcess(farm_settings, [["box:a", None], ["box:b", None]], tmp_path / "supervisor.log")
    try:
        online = wait_until(lambda: (w := supervisor.workers()) and all(
            n in w and w[n].status == "online" and supervisor.ready(n) for n in ("box:a", "box:b")) and w, 90,
            "both workers to register and be ready")
        with transaction(supervisor.ctx.session_factory) as session:  # what `farm workers` shows
            listed = worker_table(session, heartbeat_seconds=30)
        assert {(w["name"], w["status"], w["gpu_index"]) for w in listed} == {("box:a", "online", None),
                                                                              ("box:b", "online", None)}

        [first_pid] = supervisor.pids("box:a")
        os.kill(first_pid, signal.SIGKILL)
        again = wait_until(lambda: len(supervisor.pids("box:a")) == 2 and (w := supervisor.workers()["box:a"]) and
                           w.status == "online" and w.started_at > online["box:a"].started_at and w, 90,
                           "box:a to be restarted and registered again")
        # Before Celery is ready, a SIGTERM would still kill it outright rather than stop it warmly.
        wait_until(lambda: supervisor.ready("box:a"), 60, "the restarted box:a to be ready")
        log = supervisor.log()
        assert "worker box:a exited with status -9 (killed by SIGKILL); restarting in 1 s" in log, log
        second_pid = supervisor.pids("box:a")[1]
        assert second_pid != first_pid and _gone(first_pid)
        assert again.host == online["box:a"].host
        # box:b ran on untouched; the registry recorded why box:a went away.
        assert len(supervisor.pids("box:b")) == 1
        assert supervisor.workers()["box:b"].started_at == online["box:b"].started_at
        with transaction(supervisor.ctx.session_factory) as session:
            died = session.scalars(select(AuditEvent).where(AuditEvent.action == "worker.died")).all()
        assert [(e.entity_id, e.after) for e in died] == [("box:a", {"exit_code": -9})]

        supervisor.process.send_signal(signal.SIGTERM)
        assert supervisor.process.wait(timeout=60) == 0, supervisor.log()
        with transaction(supervisor.ctx.session_factory) as session:
            after = {w.name: w.status for w in session.scalars(select(Worker))}
        assert after == {"box:a": "offline", "box:b": "offline"}
        assert _gone(second_pid) and _gone(supervisor.pids("box:b")[0])
        assert "worker box:a stopped (status 0)" in supervisor.log()
    finally:
        supervisor.stop()


# -- the CLI -----------------------------------------------------------------------------------

def _farm_worker(tmp_path, *flags, **environ):
    return run_farm("worker", *flags, env=farm_environ(FARM_HOME=str(tmp_path / "farm-data"), **environ),
                    timeout=120)


def test_gpus_all_without_a_visible_gpu_exits_2_naming_gpus(tmp_path):
    # CUDA_VISIBLE_DEVICES="" hides every GPU, so this holds on a machine with GPUs too.
    result = _farm_worker(tmp_path, "--gpus", "all", CUDA_VISIBLE_DEVICES="")
    assert result.returncode == 2
    assert "error: --gpus: no GPU is visible here (CUDA_VISIBLE_DEVICES='')" in result.stderr


@pytest.mark.parametrize("flags, says", [
    (["--gpu", "0", "--gpus", "all"], "error: --gpus: give --gpu (one worker) or --gpus (one worker per GPU), not both"),
    (["--gpu", "cpu", "--gpus", "0"], "error: --gpus: give --gpu (one worker) or --gpus (one worker per GPU), not both"),
    (["--gpus", "0", "--name", "box:0"], "error: --gpus: --name names one worker"),
    (["--gpus", "0,0"], "error: --gpus: GPU 0 is listed twice"),
    (["--gpus", "2"], "error: --gpus: GPU 2 is not visible here (visible: 0, 1)"),
])
def test_bad_gpus_flags_exit_2_naming_gpus(tmp_path, flags, says):
    result = _farm_worker(tmp_path, *flags, CUDA_VISIBLE_DEVICES="0,1")
    assert result.returncode == 2
    assert says in result.stderr
    assert "started worker" not in result.stderr  # refused before any child was started


def test_gpus_all_pins_one_child_per_visible_gpu_and_a_missing_gpu_stops_it_with_2(tmp_path):
    # GPU 97 exists nowhere: the CLI starts `farm worker --gpu 97 --name HOST:97`, which refuses
    # it (exit 2), so the supervisor stops with 2 instead of restarting it in a loop.
    result = _farm_worker(tmp_path, "--gpus", "all", CUDA_VISIBLE_DEVICES="97")
    assert result.returncode == 2, result.stderr
    assert result.stderr.count(f"started worker {HOST}:97 (pid ") == 1
    assert "error: --gpu: GPU 97 does not exist" in result.stderr
    assert f"worker {HOST}:97 exited with status 2 (bad input)" in result.stderr


def test_a_child_with_bad_queues_stops_the_supervisor_with_2_without_a_restart_loop(tmp_path):
    # --queues goes on to every child, which refuses it (exit 2): restarting could not help.
    # (GPUs 97 and 98 exist nowhere, so no worker could start here even with good queues.)
    result = _farm_worker(tmp_path, "--gpus", "all", "--queues", "nosuchqueue", CUDA_VISIBLE_DEVICES="97,98")
    assert result.returncode == 2, result.stderr
    assert "error: --queues: unknown queue nosuchqueue" in result.stderr  # a child's own message
    assert result.stderr.count(f"started worker {HOST}:97 (pid ") == 1
    assert result.stderr.count(f"started worker {HOST}:98 (pid ") == 1
    assert "(bad input): not restarting it, stopping the others" in result.stderr
    assert "restarting in" not in result.stderr
