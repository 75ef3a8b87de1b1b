"""`farm worker --gpus`: one worker process per GPU, started and kept running by a supervisor.

Each child is a plain `farm worker --gpu N` started with subprocess (never fork), so it sets
CUDA_VISIBLE_DEVICES before its own torch loads; the supervisor itself never touches CUDA.
A child that dies is restarted with exponential backoff; a child that exits 2 (bad input) is
not, since a restart would fail the same way. SIGTERM or SIGINT stops every child with Celery's
warm shutdown (each finishes its current render) and the supervisor exits 0.

No torch and no database at import time: the CLI imports this before anything heavy.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Sequence

from farm.errors import InvalidInput

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _stop_with_parent() -> None:
    """In the child, before it runs: ask Linux to send it SIGTERM (a warm shutdown) if the
    supervisor dies, even by SIGKILL, so no worker is left running without its supervisor."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)

EXIT_BAD_INPUT = 2
FIRST_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 60.0
# A child that ran this long before dying was healthy: its next restart starts the backoff anew.
STABLE_AFTER_SECONDS = 60.0
# How long children get to finish their current render after SIGTERM before they are killed.
# A killed child's lease expires and the reaper re-queues its render, so this bounds waste only.
STOP_TIMEOUT_SECONDS = 120.0
POLL_SECONDS = 0.2

_NVIDIA_SMI_GPU_LINE = re.compile(r"^GPU (\d+):", re.MULTILINE)


# -- which GPUs --------------------------------------------------------------------------------

def visible_gpus() -> list[str]:
    """The GPU indices children may be pinned to, without initialising CUDA in this process.

    CUDA_VISIBLE_DEVICES, when set, is the answer ("" hides every GPU; CUDA ignores everything
    from the first negative index on). Otherwise the GPUs are counted by `nvidia-smi -L`, or by
    torch where nvidia-smi is missing or fails.
    """
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        entries = []
        for entry in (e.strip() for e in listed.split(",")):
            if not entry or entry.startswith("-"):
                break
            entries.append(entry)
        return entries
    count = _count_with_nvidia_smi()
    if count is None:
        import torch

        count = torch.cuda.device_count()
    return [str(index) for index in range(count)]


def _count_with_nvidia_smi() -> int | None:
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return None
    try:
        listing = subprocess.run([executable, "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if listing.returncode != 0:
        return None
    # MIG instances are indented lines under their GPU; a worker is pinned to a whole GPU.
    return len(_NVIDIA_SMI_GPU_LINE.findall(listing.stdout))


def parse_gpus(value: str, visible: Sequence[str] | None = None) -> list[str]:
    """`--gpus`: "all" or a comma list of GPU indices, each visible here, none twice.

    `visible` defaults to visible_gpus(), asked only once the value itself is well formed.
    """
    text = value.strip()
    if text.lower() == "all":
        gpus = list(visible_gpus() if visible is None else visible)
        if not gpus:
            raise InvalidInput("gpus", f"no GPU is visible here ({_why_none_visible()}); "
                                       "run `farm worker --gpu cpu` for a CPU worker")
        not_indices = [g for g in gpus if not g.isdigit()]
        if not_indices:
            raise InvalidInput("gpus", f"CUDA_VISIBLE_DEVICES names GPU {not_indices[0]!r}, not an index; "
                                       "give the indices instead, for example --gpus 0,1")
        return gpus
    wanted = [entry.strip() for entry in text.split(",")]
    for entry in wanted:
        if not entry.isdigit():
            raise InvalidInput("gpus", f"{entry!r} is not a GPU index; give 'all' or indices such as 0,1")
    wanted = [str(int(entry)) for entry in wanted]
    twice = next((g for i, g in enumerate(wanted) if g in wanted[:i]), None)
    if twice is not None:
        raise InvalidInput("gpus", f"GPU {twice} is listed twice")
    gpus = list(visible_gpus() if visible is None else visible)
    for gpu in wanted:
        if gpu not in gpus:
            seen = ", ".join(gpus) if gpus else f"none: {_why_none_visible()}"
            raise InvalidInput("gpus", f"GPU {gpu} is not visible here (visible: {seen})")
    return wanted


def _why_none_visible() -> str:
    if os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
        return f"CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']!r}"
    return "nvidia-smi and torch find no CUDA device"


# -- what to run --------------------------------------------------------------------------------

@dataclass(frozen=True)
class ChildSpec:
    """One supervised process: the worker name it registers as, and its command line."""

    name: str
    argv: tuple[str, ...]


def worker_child(device: str, name: str, queues: str | None = None) -> ChildSpec:
    """`farm worker --gpu DEVICE --name NAME [--queues QUEUES]` run by this Python.

    QUEUES goes on as given: the child checks it, and a bad one makes it exit 2, which stops
    the supervisor too.
    """
    argv = [sys.executable, "-m", "farm.cli", "worker", "--gpu", device, "--name", name]
    if queues:
        argv += ["--queues", queues]
    return ChildSpec(name=name, argv=tuple(argv))


def gpu_worker_children(gpus: Sequence[str], host: str, queues: str | None = None) -> list[ChildSpec]:
    """One worker per GPU, named HOST:GPU as a lone `farm worker --gpu N` would be."""
    return [worker_child(gpu, f"{host}:{gpu}", queues) for gpu in gpus]


def worker_supervisor(children: Sequence[ChildSpec], settings) -> "Supervisor":
    """A Supervisor whose dead children are marked offline in the worker registry of `settings`."""
    return Supervisor(children, on_death=_registry_release(settings))


def _registry_release(settings) -> Callable[[ChildSpec, int, datetime], None]:
    """Mark a dead child's registration offline, so that its restart may take the name again.

    Without this a restarted worker is refused its name (exit 2) until the dead one has been
    silent for three heartbeats, and the supervisor would give up on a plain crash.
    """
    from farm.db.session import make_engine, make_session_factory, transaction
    from farm.workers.registry import mark_dead

    factory = make_session_factory(make_engine(settings.database_url))

    def release(child: ChildSpec, exit_code: int, first_started_at: datetime) -> None:
        with transaction(factory) as session:
            mark_dead(session, child.name, registered_since=first_started_at, exit_code=exit_code)

    return release


# -- the supervisor -----------------------------------------------------------------------------

def describe_exit(code: int) -> str:
    """"status 1", or "status -9 (killed by SIGKILL)" (subprocess gives a fatal signal as -N)."""
    if code < 0:
        try:
            return f"status {code} (killed by {signal.Signals(-code).name})"
        except ValueError:  # a real-time signal has no name
            pass
    return f"status {code}"


class Backoff:
    """Delays before restarting one child: first, 2 x first, 4 x first ... at most `cap`;
    back to `first` once the child had run `stable_after` seconds before it died."""

    def __init__(self, first: float = FIRST_BACKOFF_SECONDS, cap: float = MAX_BACKOFF_SECONDS,
                 stable_after: float = STABLE_AFTER_SECONDS):
        self.first, self.cap, self.stable_after = first, cap, stable_after
        self._next = first

    def delay(self, uptime: float) -> float:
        """The wait before the next start of a child that died after `uptime` seconds."""
        if uptime >= self.stable_after:
            self._next = self.first
        delay = self._next
        self._next = min(delay * 2, self.cap)
        return delay


@dataclass
class _Child:
    spec: ChildSpec
    backoff: Backoff
    process: subprocess.Popen | None = None
    started: float = 0.0                  # time.monotonic() of the latest start
    first_started_at: datetime | None = None  # wall clock of the first start, for the registry
    restart_at: float | None = None       # set while a restart is pending
    done: bool = False                    # exited and will not be restarted


class Supervisor:
    """Runs `children`, restarts those that die, and stops them all on SIGTERM / SIGINT.

    `on_death(child, exit_code, first_started_at)` is called for every exit other than 0 and 2,
    before any restart; an error in it is reported and does not stop the supervisor.
    """

    def __init__(self, children: Sequence[ChildSpec], *,
                 on_death: Callable[[ChildSpec, int, datetime], None] | None = None,
                 stop_timeout: float = STOP_TIMEOUT_SECONDS,
                 backoff: Callable[[], Backoff] = Backoff):
        names = [c.name for c in children]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"a supervisor needs children with distinct names, got {names}")
        self.children = [_Child(spec, backoff()) for spec in children]
        self.on_death = on_death
        self.stop_timeout = stop_timeout
        self._stop_signal: int | None = None

    def run(self) -> int:
        """Supervise until told to stop or until a child exits 2; return the exit status."""
        previous = {sig: signal.signal(sig, self._request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            for child in self.children:
                self._start(child)
            status = self._supervise()
            self._stop_all()
            return status
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _request_stop(self, signum, _frame) -> None:
        # Only a flag: the loop below notices it within POLL_SECONDS. (Taking a lock here,
        # as threading.Event.set does, could deadlock against the interrupted main thread.)
        self._stop_signal = signum

    def _supervise(self) -> int:
        while self._stop_signal is None:
            for child in self.children:
                if child.process is not None and (code := child.process.poll()) is not None:
                    if self._stop_signal is not None:
                        break  # it stopped with the others; _stop_all reports it
                    if self._on_exit(child, code) == EXIT_BAD_INPUT:
                        return EXIT_BAD_INPUT
                elif child.restart_at is not None and time.monotonic() >= child.restart_at:
                    self._start(child)
            if all(child.done for child in self.children):
                self._say("every worker has stopped by itself; nothing left to supervise")
                return 0
            time.sleep(POLL_SECONDS)
        self._say(f"{signal.Signals(self._stop_signal).name} received: stopping the workers "
                  "once their current renders finish")
        return 0

    def _on_exit(self, child: _Child, code: int) -> int:
        child.process = None
        name = child.spec.name
        if code == EXIT_BAD_INPUT:
            child.done = True
            self._say(f"worker {name} exited with {describe_exit(code)} (bad input): not restarting it, "
                      "stopping the others")
            return EXIT_BAD_INPUT
        if code == 0:
            # Celery exits 0 only when told to stop (SIGTERM to this child, or a remote
            # `celery control shutdown`): that is an operator's decision, not a crash.
            child.done = True
            self._say(f"worker {name} stopped ({describe_exit(code)}); not restarting it")
            return 0
        self._release(child, code)
        delay = child.backoff.delay(uptime=time.monotonic() - child.started)
        child.restart_at = time.monotonic() + delay
        self._say(f"worker {name} exited with {describe_exit(code)}; restarting in {delay:g} s")
        return code

    def _start(self, child: _Child) -> None:
        child.restart_at = None
        if child.first_started_at is None:
            child.first_started_at = datetime.now(timezone.utc)
        child.started = time.monotonic()
        # The child shares our stdout/stderr and process group: a Ctrl-C in a terminal reaches
        # it directly too, which is harmless as the SIGTERM we forward is Celery's warm shutdown.
        child.process = subprocess.Popen(child.spec.argv, preexec_fn=_stop_with_parent)
        self._say(f"started worker {child.spec.name} (pid {child.process.pid})")

    def _release(self, child: _Child, code: int) -> None:
        if self.on_death is None:
            return
        try:
            self.on_death(child.spec, code, child.first_started_at)
        except Exception as error:  # noqa: BLE001  (a database blip must not stop the supervisor)
            self._say(f"could not mark worker {child.spec.name} offline: {error}")

    def _stop_all(self) -> None:
        running = [c for c in self.children if c.process is not None]
        for child in running:
            # SIGTERM, also when we got SIGINT: Celery takes a second SIGINT as a cold shutdown
            # (abandon the render), and after a Ctrl-C the children already have their first.
            child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        for child in running:
            try:
                code = child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._say(f"worker {child.spec.name} did not stop within {self.stop_timeout:g} s; killing it")
                child.process.kill()
                code = child.process.wait()
            if code not in (0, EXIT_BAD_INPUT):
                self._release(child, code)
            self._say(f"worker {child.spec.name} stopped ({describe_exit(code)})")
            child.process = None

    @staticmethod
    def _say(message: str) -> None:
        print(f"farm worker supervisor: {message}", file=sys.stderr, flush=True)
