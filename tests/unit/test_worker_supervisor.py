"""`farm worker --gpus`: which GPUs are visible and what --gpus accepts (farm.queue.supervisor)."""

import os
import signal
import stat
import sys

import pytest

from farm.errors import InvalidInput
from farm.queue.supervisor import (Backoff, ChildSpec, Supervisor, gpu_worker_children, parse_gpus,
                                   visible_gpus)


@pytest.mark.parametrize("listed, expected", [
    ("2,3", ["2", "3"]),
    (" 0 , 1 ", ["0", "1"]),
    ("", []),
    ("1,-1,2", ["1"]),  # CUDA ignores everything from the first invalid index on
    ("-1", []),
    ("GPU-5f1c0e7a", ["GPU-5f1c0e7a"]),
])
def test_visible_gpus_follow_cuda_visible_devices(monkeypatch, listed, expected):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", listed)
    assert visible_gpus() == expected


def _fake_nvidia_smi(folder, output: str, exit_code: int = 0) -> None:
    # Stands in for NVIDIA's tool (not ours), so the listing parser runs on a machine without GPUs.
    script = folder / "nvidia-smi"
    script.write_text(f"#!/bin/sh\ncat <<'EOF'\n{output}\nEOF\nexit {exit_code}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


def test_visible_gpus_counts_whole_gpus_listed_by_nvidia_smi(monkeypatch, tmp_path):
    _fake_nvidia_smi(tmp_path, "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-aaaa)\n"
                               "  MIG 3g.40gb     Device  0: (UUID: MIG-bbbb)\n"
                               "GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-cccc)")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert visible_gpus() == ["0", "1"]


def test_visible_gpus_asks_torch_when_nvidia_smi_fails(monkeypatch, tmp_path):
    import torch

    _fake_nvidia_smi(tmp_path, "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.", 9)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert visible_gpus() == [str(i) for i in range(torch.cuda.device_count())]


@pytest.mark.parametrize("value, visible, expected", [
    ("all", ["0", "1", "2"], ["0", "1", "2"]),
    ("ALL", ["3"], ["3"]),
    ("0,2", ["0", "1", "2"], ["0", "2"]),
    (" 1 ", ["0", "1"], ["1"]),
    ("01", ["1"], ["1"]),
])
def test_parse_gpus_accepts(value, visible, expected):
    assert parse_gpus(value, visible) == expected


@pytest.mark.parametrize("value, visible, says", [
    ("all", [], "no GPU is visible here"),
    ("0", [], "GPU 0 is not visible here (visible: none"),
    ("0,3", ["0", "1"], "GPU 3 is not visible here (visible: 0, 1)"),
    ("0,1,0", ["0", "1"], "GPU 0 is listed twice"),
    ("0,00", ["0"], "GPU 0 is listed twice"),
    ("first", ["0"], "'first' is not a GPU index"),
    ("0,,1", ["0", "1"], "'' is not a GPU index"),
    ("", ["0"], "'' is not a GPU index"),
    ("-1", ["0"], "'-1' is not a GPU index"),
    ("cpu", ["0"], "'cpu' is not a GPU index"),
    ("all", ["GPU-5f1c0e7a"], "names GPU 'GPU-5f1c0e7a', not an index"),
])
def test_parse_gpus_refuses(value, visible, says):
    with pytest.raises(InvalidInput) as raised:
        parse_gpus(value, visible)
    assert raised.value.field == "gpus"
    assert says in raised.value.message


def test_parse_gpus_reads_cuda_visible_devices_when_not_told(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(InvalidInput, match="CUDA_VISIBLE_DEVICES=''"):
        parse_gpus("all")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5")
    assert parse_gpus("all") == ["4", "5"]
    assert parse_gpus("5") == ["5"]


def test_one_child_per_gpu_runs_farm_worker_pinned_and_named_host_gpu():
    children = gpu_worker_children(["0", "3"], "box", "sd1,sdxl")
    assert [c.name for c in children] == ["box:0", "box:3"]
    assert children[1].argv == (sys.executable, "-m", "farm.cli", "worker", "--gpu", "3", "--name", "box:3",
                                "--queues", "sd1,sdxl")
    assert "--queues" not in gpu_worker_children(["0"], "box")[0].argv


def test_children_need_distinct_names():
    with pytest.raises(ValueError):
        Supervisor([ChildSpec("box:0", ("true",)), ChildSpec("box:0", ("true",))])
    with pytest.raises(ValueError):
        Supervisor([])


def test_backoff_doubles_up_to_a_minute_and_starts_again_after_a_healthy_run():
    backoff = Backoff()
    assert [backoff.delay(uptime=0.5) for _ in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert backoff.delay(uptime=60) == 1  # it had run a minute: a new crash, not the same loop
    assert backoff.delay(uptime=3) == 2


# -- the supervisor loop, with tiny stand-in children (no farm workers, no services) ----------

SUPERVISE = """
import json, sys
from farm.queue.supervisor import Backoff, ChildSpec, Supervisor
plan = json.loads(sys.argv[1])

def record_death(child, code, first_started_at):
    with open(plan["deaths"], "a") as log:
        log.write(f"{child.name} {code}\\n")

supervisor = Supervisor([ChildSpec(name, (sys.executable, "-c", *argv)) for name, argv in plan["children"]],
                        on_death=record_death, stop_timeout=plan.get("stop_timeout", 30),
                        backoff=lambda: Backoff(0.05, 0.1, 60))
sys.exit(supervisor.run())
"""


def _start_supervisor(tmp_path, children, **options):
    import json
    import subprocess

    plan = {"children": children, "deaths": str(tmp_path / "deaths"), **options}
    log = open(tmp_path / "supervisor.log", "w")
    with log:
        return subprocess.Popen([sys.executable, "-c", SUPERVISE, json.dumps(plan)], stdout=log,
                                stderr=subprocess.STDOUT)


def _deaths(tmp_path):
    path = tmp_path / "deaths"
    return path.read_text().splitlines() if path.exists() else []


def test_a_crashing_child_is_restarted_with_growing_delays_until_it_stops_cleanly(tmp_path):
    counter = tmp_path / "runs"
    # Fails twice, then exits 0 (as a worker told to stop does): restarted twice, then left alone.
    flaky = ["import pathlib, sys; p = pathlib.Path(sys.argv[1]); n = int(p.read_text()) if p.exists() else 0; "
             "p.write_text(str(n + 1)); sys.exit(1 if n < 2 else 0)", str(counter)]
    supervisor = _start_supervisor(tmp_path, [["flaky", flaky]])
    assert supervisor.wait(timeout=60) == 0
    log = (tmp_path / "supervisor.log").read_text()
    assert counter.read_text() == "3", log
    assert "worker flaky exited with status 1; restarting in 0.05 s" in log
    assert "worker flaky exited with status 1; restarting in 0.1 s" in log
    assert "worker flaky stopped (status 0); not restarting it" in log
    assert _deaths(tmp_path) == ["flaky 1", "flaky 1"]  # each crash reported before its restart


def test_a_child_that_exits_2_stops_the_supervisor_with_2_and_is_not_restarted(tmp_path):
    supervisor = _start_supervisor(tmp_path, [["steady", ["import time; time.sleep(120)"]],
                                              ["bad", ["import sys; sys.exit(2)"]]])
    assert supervisor.wait(timeout=60) == 2
    log = (tmp_path / "supervisor.log").read_text()
    assert log.count("started worker bad") == 1, log
    assert "worker bad exited with status 2 (bad input): not restarting it, stopping the others" in log
    assert "worker steady stopped (status -15 (killed by SIGTERM))" in log
    assert "restarting" not in log.replace("not restarting", "")


READY_THEN_FINISH_ON_SIGNAL = """
import pathlib, signal, sys, time
out = pathlib.Path(sys.argv[1])
def finish(signum, frame):
    time.sleep(0.5)  # the render in hand
    out.write_text(signal.Signals(signum).name)
    sys.exit(0)
signal.signal(signal.SIGTERM, finish)
signal.signal(signal.SIGINT, finish)
(out.parent / (out.name + ".ready")).touch()
time.sleep(120)
"""


@pytest.mark.parametrize("stop_with", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sigterm_or_sigint_reaches_every_child_as_sigterm_and_they_finish_before_exit_0(tmp_path, stop_with):
    from tests.fixtures.processes import wait_until

    outs = [tmp_path / "a", tmp_path / "b"]
    supervisor = _start_supervisor(tmp_path, [[o.name, [READY_THEN_FINISH_ON_SIGNAL, str(o)]] for o in outs])
    wait_until(lambda: all((o.parent / (o.name + ".ready")).exists() for o in outs), 30, "both children")
    supervisor.send_signal(stop_with)
    assert supervisor.wait(timeout=60) == 0
    # SIGTERM is Celery's warm shutdown; a forwarded SIGINT would be a second Ctrl-C (cold).
    assert [o.read_text() for o in outs] == ["SIGTERM", "SIGTERM"]
    log = (tmp_path / "supervisor.log").read_text()
    assert f"{stop_with.name} received" in log and "worker a stopped (status 0)" in log
    assert _deaths(tmp_path) == []


def test_a_child_that_ignores_sigterm_is_killed_after_the_stop_timeout(tmp_path):
    from tests.fixtures.processes import wait_until

    ready = tmp_path / "ready"
    stubborn = ["import pathlib, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                "pathlib.Path(sys.argv[1]).touch(); time.sleep(120)", str(ready)]
    supervisor = _start_supervisor(tmp_path, [["stubborn", stubborn]], stop_timeout=0.5)
    wait_until(ready.exists, 30, "the child")
    supervisor.terminate()
    assert supervisor.wait(timeout=60) == 0
    log = (tmp_path / "supervisor.log").read_text()
    assert "worker stubborn did not stop within 0.5 s; killing it" in log
    assert "worker stubborn stopped (status -9 (killed by SIGKILL))" in log
    assert _deaths(tmp_path) == ["stubborn -9"]  # marked offline: it could not do so itself


def test_children_get_sigterm_when_the_supervisor_is_killed(tmp_path):
    from tests.fixtures.processes import wait_until

    out = tmp_path / "a"
    supervisor = _start_supervisor(tmp_path, [["a", [READY_THEN_FINISH_ON_SIGNAL, str(out)]]])
    wait_until(lambda: (tmp_path / "a.ready").exists(), 30, "the child")
    supervisor.kill()  # SIGKILL: the supervisor forwards nothing
    supervisor.wait(timeout=30)
    # The kernel's parent-death signal still tells the child to finish and stop.
    wait_until(out.exists, 30, "the orphaned child to get its SIGTERM")
    assert out.read_text() == "SIGTERM"
