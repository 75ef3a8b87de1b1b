"""What the farm's dispatch path costs: throughput and per-render overhead on real services.

With the instant engine (FARM_RENDER_ENGINE=instant: a solid image at once, no model), every
second measured here is the farm's own: submit, queue, lease, PNG + thumbnail, S3, rows.
The script sets up, in one run, on this machine:
  - a fresh Postgres database (farm_bench_<random>, dropped at the end), `farm db upgrade`;
  - its own SeaweedFS S3 server on loopback (the one the tests use) and a bucket;
  - a Redis database number of its own for the broker (flushed before and after);
  - `--workers` `farm worker --gpu cpu` processes on the instant engine;
  - a bare Celery app (same Redis, a result backend) with one worker process and a no-op task.
Then it measures:
  1. overhead: `--singles` single-render jobs, one after another on the idle farm, each timed
     from submit until its render row is committed as succeeded; and, interleaved with them,
     as many round trips of the bare no-op task (`send_task(...).get()`). Prints the medians and
     their ratio.
  2. throughput: one `--renders`-render job (64x64, 1 step), timed from submit until every render
     is committed as succeeded: renders per second end to end; and the CPU each process on the
     machine used meanwhile (on a shared machine, what the neighbours took, and what the farm's
     own CPU per render would allow on idle cores).
The baseline stores and fetches its result (that is how a caller learns of it); the farm's tasks
ignore theirs and the bench learns from the database instead.
Exits 1 if the farm did not complete every render (or a service did not start).

How "committed as succeeded" is seen: a trigger in the bench's own throwaway database sends a
Postgres NOTIFY when a render's state becomes succeeded. Notifications are delivered at commit,
so the bench learns of each one at once without polling (a poll loop would compete with the
workers for the 2 cores, and a poll interval would blur a figure of a few milliseconds).

    python bench/dispatch.py [--renders 500] [--workers 2] [--singles 50] [--profile DIR]

--profile DIR records each farm worker with py-spy during the throughput run (speedscope
files in DIR; py-spy must be installed). Services: RENDERFARM_TEST_POSTGRES_URL and
RENDERFARM_TEST_REDIS_URL as for the tests (defaults: postgres@127.0.0.1:5432, redis 127.0.0.1:6379).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack, contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import psycopg  # noqa: E402
import redis  # noqa: E402
from celery import Celery  # noqa: E402
from sqlalchemy import select  # noqa: E402

from farm.campaigns.service import adhoc_campaign  # noqa: E402
from farm.context import FarmContext  # noqa: E402
from farm.db.models import Job, Render  # noqa: E402
from farm.db.session import transaction  # noqa: E402
from farm.jobs.dispatch import DIRECT_PROMPT_TEMPLATE, enqueue_job, submit_prompt  # noqa: E402
from farm.jobs.service import JobRequest, submit_job  # noqa: E402
from farm.settings import load_settings  # noqa: E402
from farm.templates.service import get_or_create_template  # noqa: E402
from tests.fixtures.databases import scratch_database  # noqa: E402
from tests.fixtures.processes import farm_environ, run_farm  # noqa: E402
from tests.fixtures.s3 import S3ServerError, running_s3_server  # noqa: E402

POSTGRES_ADMIN_URL = os.environ.get("RENDERFARM_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_BASE_URL = os.environ.get("RENDERFARM_TEST_REDIS_URL", "redis://127.0.0.1:6379/15").rsplit("/", 1)[0]
# The tests use db 15; the bench keeps to its own so a bench run and a test run never flush
# each other's messages.
DEFAULT_REDIS_DB = 14
PARAMS = {"steps": 1, "width": 64, "height": 64}
PROMPT = "a lighthouse at dusk"
NOOP_QUEUE = "bench-noop"
NOTIFY_CHANNEL = "bench_render_succeeded"
WARM_UP_SINGLES = 3
START_TIMEOUT_S = 120
STOP_TIMEOUT_S = 30


class BenchFailed(Exception):
    """The farm or a service did not do what was asked; the message says what."""


# -- the bare Celery baseline -----------------------------------------------------------------

def noop_app(broker_url: str) -> Celery:
    """A Celery app with nothing of the farm in it, configured as the farm configures its own
    (late acks, prefetch 1), plus a result backend so the caller can wait for the answer."""
    app = Celery("bench-noop", broker=broker_url, backend=broker_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True, worker_prefetch_multiplier=1, task_default_queue=NOOP_QUEUE,
        broker_connection_retry_on_startup=True, worker_hijack_root_logger=False,
    )

    @app.task(name="bench.noop")
    def noop() -> None:
        return None

    return app


def serve_noop(broker_url: str) -> None:
    """The baseline's worker process: the same worker options as `farm worker` (solo pool, one
    task at a time, prefetch 1, fair), so the two differ only by what the farm does per render."""
    app = noop_app(broker_url)
    app.Worker(hostname=f"bench-noop-{os.getpid()}@localhost", queues=[NOOP_QUEUE], pool="solo",
               concurrency=1, prefetch_multiplier=1, loglevel="WARNING", optimization="fair").start()


def noop_round_trip(app: Celery) -> float:
    start = time.perf_counter()
    app.send_task("bench.noop", queue=NOOP_QUEUE).get(timeout=30)
    return time.perf_counter() - start


# -- services and processes -------------------------------------------------------------------

@contextmanager
def redis_database(url: str) -> Iterator[str]:
    client = redis.Redis.from_url(url)
    client.flushdb()  # no messages left over from an earlier, interrupted run
    try:
        yield url
    finally:
        client.flushdb()
        client.close()


@contextmanager
def child_process(command: list[str], env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen]:
    """A long-running child, stopped with SIGTERM (a warm shutdown) and killed if it lingers."""
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as error:
        return f"(no log: {error})"


NOTIFY_TRIGGER_SQL = f"""
CREATE FUNCTION bench_notify_succeeded() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state = 'succeeded' AND OLD.state IS DISTINCT FROM 'succeeded' THEN
        PERFORM pg_notify('{NOTIFY_CHANNEL}', NEW.id::text);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER bench_notify_succeeded AFTER UPDATE OF state ON renders
    FOR EACH ROW EXECUTE FUNCTION bench_notify_succeeded();
"""


class SucceededRenders:
    """Render ids as their success is committed, with the moment this process heard of each."""

    def __init__(self, database_url: str):
        self.conn = psycopg.connect(database_url, autocommit=True)
        self.conn.execute(NOTIFY_TRIGGER_SQL)
        self.conn.execute(f"LISTEN {NOTIFY_CHANNEL}")

    def wait(self, count: int, timeout: float, still_hopeful) -> list[tuple[int, float]]:
        """Up to `count` (render id, perf_counter) pairs; fewer if `still_hopeful()` turns false
        (checked each second without news) or `timeout` passes."""
        heard: list[tuple[int, float]] = []
        deadline = time.perf_counter() + timeout
        while len(heard) < count and time.perf_counter() < deadline:
            before = len(heard)
            for notify in self.conn.notifies(timeout=min(1.0, max(deadline - time.perf_counter(), 0.01)),
                                             stop_after=count - len(heard)):
                heard.append((int(notify.payload), time.perf_counter()))
            if len(heard) == before and not still_hopeful():
                break
        return heard

    def close(self) -> None:
        self.conn.close()


# -- the farm ---------------------------------------------------------------------------------

def submit_renders(ctx: FarmContext, count: int, seed: int) -> int:
    """One job of `count` renders (seeds seed..seed+count-1), submitted and queued as
    submit_prompt does; it is not used for more than one image because its `count` is
    AUTOMATIC1111's batch count, at most 64. Returns the job id."""
    if count == 1:
        return submit_prompt(ctx, prompt=PROMPT, seed=seed, count=1, params=PARAMS)
    with transaction(ctx.session_factory) as session:
        version = get_or_create_template(session, name=DIRECT_PROMPT_TEMPLATE, body="{{ prompt }}",
                                         negative_body="{{ negative_prompt }}")
        job = submit_job(session, JobRequest(
            campaign_id=adhoc_campaign(session).id, template_version_id=version.id,
            model_name=ctx.settings.default_model,
            variable_rows=[{"prompt": PROMPT, "negative_prompt": ""}],
            seeds=list(range(seed, seed + count)), images_per_seed=1, params=PARAMS,
        ))
        job_id = job.id
    enqueue_job(ctx, job_id)
    return job_id


def job_still_running(ctx: FarmContext, job_id: int):
    def check() -> bool:
        with transaction(ctx.session_factory) as session:
            return session.scalar(select(Job.status).where(Job.id == job_id)) in ("queued", "running")
    return check


def job_failure(ctx: FarmContext, job_id: int) -> str:
    with transaction(ctx.session_factory) as session:
        status = session.scalar(select(Job.status).where(Job.id == job_id))
        states = session.execute(select(Render.state, Render.error).where(Render.job_id == job_id)).all()
    counts: dict[str, int] = {}
    for state, _ in states:
        counts[state] = counts.get(state, 0) + 1
    errors = sorted({error for _, error in states if error})[:3]
    return f"job {job_id} is {status}; renders by state: {counts}; errors: {errors or 'none'}"


def wait_for_workers(app: Celery, count: int, processes: list[subprocess.Popen], logs: list[Path]) -> None:
    """Until `count` farm workers answer a Celery ping, i.e. consume from the broker."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        for process, log in zip(processes, logs):
            if process.poll() is not None:
                raise BenchFailed(f"a worker exited with status {process.returncode}:\n{log_tail(log)}")
        replies = app.control.ping(timeout=1.0) or []
        if len(replies) >= count:
            return
    raise BenchFailed(f"fewer than {count} workers answered within {START_TIMEOUT_S} s:\n"
                      + "\n".join(log_tail(log) for log in logs))


@contextmanager
def py_spy_recording(pids: list[int], folder: Path | None) -> Iterator[None]:
    """py-spy on each worker for the duration of the block (nothing if `folder` is None)."""
    if folder is None:
        yield
        return
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    folder.mkdir(parents=True, exist_ok=True)
    recorders = [subprocess.Popen([py_spy, "record", "--pid", str(pid), "--rate", "100", "--format", "speedscope",
                                   "--output", str(folder / f"worker-{n}.speedscope.json")],
                                  stdout=subprocess.DEVNULL, stderr=open(folder / f"worker-{n}.py-spy.log", "w"))
                 for n, pid in enumerate(pids, 1)]
    time.sleep(1.0)  # py-spy attaches before the work starts
    try:
        yield
    finally:
        for recorder in recorders:
            recorder.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
        for recorder in recorders:
            try:
                recorder.wait(timeout=30)
            except subprocess.TimeoutExpired:
                recorder.kill()


# -- measurements -----------------------------------------------------------------------------

def measure_singles(ctx: FarmContext, noop: Celery, succeeded: SucceededRenders, singles: int):
    """Alternate a farm single-render job and a bare no-op round trip, so drift (the heartbeat,
    Postgres' autovacuum) falls on both alike. Returns (farm seconds, no-op seconds, breakdown)."""
    farm_times, noop_times = [], []
    breakdown = {"submit call": [], "submit -> worker starts": [], "worker starts -> succeeded": [],
                 "submit returns -> succeeded": []}
    for i in range(WARM_UP_SINGLES + singles):
        start_wall = datetime.now(timezone.utc)
        start = time.perf_counter()
        job_id = submit_renders(ctx, 1, seed=10_000 + i)
        submitted = time.perf_counter()
        heard = succeeded.wait(1, timeout=60, still_hopeful=job_still_running(ctx, job_id))
        if not heard:
            raise BenchFailed(f"a single-render job did not succeed: {job_failure(ctx, job_id)}")
        done = heard[0][1]
        noop_time = noop_round_trip(noop)
        if i < WARM_UP_SINGLES:
            continue  # first renders: connection pools, boto3 client, imports on first use
        farm_times.append(done - start)
        noop_times.append(noop_time)
        with transaction(ctx.session_factory) as session:
            started_at = session.scalar(select(Render.started_at).where(Render.job_id == job_id))
        worker_start = (started_at - start_wall).total_seconds()
        breakdown["submit call"].append(submitted - start)
        breakdown["submit -> worker starts"].append(worker_start)
        breakdown["worker starts -> succeeded"].append(done - start - worker_start)
        breakdown["submit returns -> succeeded"].append(done - submitted)
    return farm_times, noop_times, breakdown


def measure_throughput(ctx: FarmContext, succeeded: SucceededRenders, renders: int, timeout: float):
    start = time.perf_counter()
    job_id = submit_renders(ctx, renders, seed=1)
    submitted = time.perf_counter()
    heard = succeeded.wait(renders, timeout=timeout, still_hopeful=job_still_running(ctx, job_id))
    if len(heard) < renders:
        raise BenchFailed(f"{len(heard)} of {renders} renders succeeded: {job_failure(ctx, job_id)}")
    with transaction(ctx.session_factory) as session:
        by_worker: dict[str, int] = {}
        for name in session.scalars(select(Render.rendered_by).where(Render.job_id == job_id)):
            by_worker[name] = by_worker.get(name, 0) + 1
    return heard[-1][1] - start, submitted - start, by_worker


def cpu_seconds_by_process() -> dict[int, tuple[str, float]]:
    """pid -> (command name, user + system CPU seconds so far), for every process we may read."""
    tick = os.sysconf("SC_CLK_TCK")
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        found[int(entry.name)] = (name, (int(fields[11]) + int(fields[12])) / tick)
    return found


@contextmanager
def cpu_accounting(roles: dict[int, str], into: dict[str, float]) -> Iterator[None]:
    """CPU seconds spent during the block, by role: the pids in `roles`, else by command name
    (postgres, redis-server, weed, ...). On 2 cores this shows who the workers share them with."""
    before = cpu_seconds_by_process()
    yield
    after = cpu_seconds_by_process()
    for pid, (name, seconds) in after.items():
        used = seconds - before.get(pid, (name, 0.0))[1]
        if used > 0:
            role = roles.get(pid, "py-spy (--profile)" if name == "py-spy" else f"other processes: {name}")
            into[role] = into.get(role, 0.0) + used


def child_pids(name: str) -> list[int]:
    """This process's children with command name `name` (the S3 server that the helper started)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text() if entry.name.isdigit() else ""
        except OSError:
            continue
        if stat and stat[stat.index("(") + 1:stat.rindex(")")] == name \
                and int(stat[stat.rindex(")") + 2:].split()[1]) == os.getpid():
            pids.append(int(entry.name))
    return pids


def postgres_roles(database_url: str) -> dict[int, str]:
    """Postgres server processes by what they serve: this bench's database, or the whole server
    (WAL writer, checkpointer: their work grows with our commits). Backends of other databases
    (other people's tests on a shared machine) are left to count as other processes."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute("SELECT pid, datname FROM pg_stat_activity").fetchall()
    database = database_url.rsplit("/", 1)[1]
    return {pid: "postgres (this bench's database)" if datname == database else "postgres (WAL writer etc.)"
            for pid, datname in rows if datname in (database, None)}


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({model}), {platform.system()} {platform.release()}, Python {platform.python_version()}"


def run(args: argparse.Namespace) -> None:
    print(f"machine: {machine()}")
    print(f"workload: {args.workers} instant-engine workers; {args.singles} single-render jobs; one job of "
          f"{args.renders} renders; 64x64, 1 step")
    work = Path(tempfile.mkdtemp(prefix="farm-bench-dispatch-"))
    failed_logs: list[Path] = []
    try:
        with ExitStack() as stack:
            database_url = stack.enter_context(scratch_database(args.postgres_url, "farm_bench"))
            broker_url = stack.enter_context(redis_database(f"{args.redis_url.rstrip('/')}/{args.redis_db}"))
            s3 = stack.enter_context(running_s3_server(work / "seaweedfs"))
            bucket = f"bench-{uuid.uuid4().hex[:16]}"
            s3.client().create_bucket(Bucket=bucket)
            settings = {
                "FARM_HOME": str(work / "farm-data"), "FARM_DATABASE_URL": database_url,
                "FARM_BROKER_URL": broker_url, "FARM_STORAGE_URL": f"s3://{bucket}/bench",
                "FARM_S3_ENDPOINT_URL": s3.endpoint_url, "FARM_S3_REGION": s3.region,
                "FARM_S3_ACCESS_KEY_ID": s3.access_key_id, "FARM_S3_SECRET_ACCESS_KEY": s3.secret_access_key,
            }
            upgraded = run_farm("db", "upgrade", env=farm_environ(**settings))
            if upgraded.returncode != 0:
                raise BenchFailed(f"farm db upgrade failed:\n{upgraded.stderr}")
            ctx = FarmContext(load_settings(settings))
            stack.callback(ctx.db_engine.dispose)
            succeeded = SucceededRenders(database_url)
            stack.callback(succeeded.close)

            worker_env = farm_environ(**settings, FARM_RENDER_ENGINE="instant")
            workers, logs = [], []
            for n in range(1, args.workers + 1):
                logs.append(work / f"worker-{n}.log")
                workers.append(stack.enter_context(child_process(
                    [sys.executable, "-m", "farm.cli", "worker", "--gpu", "cpu", "--name", f"bench:{n}"],
                    worker_env, logs[-1])))
            noop_log = work / "noop-worker.log"
            noop_worker = stack.enter_context(child_process(
                [sys.executable, str(Path(__file__).resolve()), "--serve-noop", broker_url],
                {**os.environ}, noop_log))
            failed_logs = [*logs, noop_log]
            wait_for_workers(ctx.celery, args.workers, workers, logs)
            noop = noop_app(broker_url)
            try:
                noop_round_trip(noop)  # waits for the no-op worker to come up
            except Exception as error:  # noqa: BLE001  (any failure here means no baseline)
                raise BenchFailed(f"the no-op Celery worker did not answer: {error!r} "
                                  f"(exit status {noop_worker.poll()}):\n{log_tail(noop_log)}") from None

            farm_times, noop_times, breakdown = measure_singles(ctx, noop, succeeded, args.singles)
            roles = {w.pid: "farm workers" for w in workers}
            roles |= {os.getpid(): "bench (submit, LISTEN)", noop_worker.pid: "no-op Celery worker (idle)"}
            roles |= {pid: "SeaweedFS (this bench's)" for pid in child_pids("weed")}
            roles |= postgres_roles(database_url)
            # Shared with anything else on the machine, but at rest unless someone queues work.
            roles |= {pid: "redis-server" for pid, (name, _) in cpu_seconds_by_process().items()
                      if name == "redis-server"}
            cpu: dict[str, float] = {}
            with py_spy_recording([w.pid for w in workers], args.profile), cpu_accounting(roles, cpu):
                wall, submit_time, by_worker = measure_throughput(
                    ctx, succeeded, args.renders, timeout=max(120.0, args.renders * 0.5))
            failed_logs = []
    except (BenchFailed, S3ServerError) as error:
        print(f"FAILED: {error}", file=sys.stderr)
        for log in failed_logs:
            print(f"--- {log.name} ---\n{log_tail(log)}", file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)

    farm_median, noop_median = statistics.median(farm_times), statistics.median(noop_times)
    rate = args.renders / wall
    ratio = farm_median / noop_median
    print()
    print(f"overhead, {args.singles} sequential single-render jobs on the idle farm (median, p90):")
    print(f"  farm: submit -> render committed succeeded   {ms(farm_median)}  {ms(percentile(farm_times, 90))}")
    for label, values in breakdown.items():
        print(f"    {label:<41}  {ms(statistics.median(values))}")
    print(f"  bare Celery no-op round trip (.get())        {ms(noop_median)}  {ms(percentile(noop_times, 90))}")
    print(f"  ratio farm / bare Celery                     {ratio:8.1f} x   (goal: at most 5 x)")
    # The submit call writes the job (one durable transaction, its audit event, routing): a job
    # pays it once, whatever its size. What each render costs on its own is the rest: queue
    # handoff, lease, image, storage, finish.
    per_render = statistics.median(breakdown["submit returns -> succeeded"])
    per_render_ratio = per_render / noop_median
    print(f"  per render, without the job's submit call   {ms(per_render)}")
    print(f"  ratio per render / bare Celery               {per_render_ratio:8.1f} x")
    print()
    print(f"throughput, one job of {args.renders} renders on {args.workers} workers:")
    print(f"  wall time, submit -> all committed succeeded {wall:8.2f} s   (of which the submit call "
          f"{submit_time:.2f} s)")
    print(f"  renders per second                           {rate:8.1f}     (goal: at least 50)")
    print(f"  renders per worker                           {dict(sorted(by_worker.items()))}")
    print(f"  CPU seconds in that time, by process ({os.cpu_count()} cores x {wall:.1f} s = "
          f"{os.cpu_count() * wall:.1f} core-seconds available):")
    for role, seconds in sorted(cpu.items(), key=lambda item: -item[1])[:8]:
        print(f"    {role:<41}  {seconds:8.2f} s   {seconds / args.renders * 1000:6.1f} ms/render")
    # On a shared machine the wall-clock figure also measures the neighbours; the CPU that the
    # farm's own processes spent per render bounds what these cores could do with nobody else.
    own = sum(seconds for role, seconds in cpu.items() if not role.startswith(("other processes", "py-spy")))
    others = sum(seconds for role, seconds in cpu.items() if role.startswith("other processes"))
    print(f"  CPU of the farm's own processes per render     {own / args.renders * 1000:6.1f} ms -> at most "
          f"{args.renders * os.cpu_count() / own:.0f} renders/s on {os.cpu_count()} idle cores (CPU bound only)")
    print(f"  CPU taken by other processes meanwhile         {others:6.1f} s of "
          f"{os.cpu_count() * wall:.1f} core-seconds")
    print()
    print(f"RESULT renders_per_s={rate:.1f} farm_overhead_ms={farm_median * 1000:.1f} "
          f"celery_round_trip_ms={noop_median * 1000:.1f} ratio={ratio:.1f} "
          f"per_render_ms={per_render * 1000:.1f} per_render_ratio={per_render_ratio:.1f}")


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--renders", type=positive, default=500, help="renders in the throughput job")
    parser.add_argument("--workers", type=positive, default=2, help="farm worker processes")
    parser.add_argument("--singles", type=positive, default=50, help="single-render jobs for the overhead")
    parser.add_argument("--postgres-url", default=POSTGRES_ADMIN_URL, help="a Postgres URL that may create databases")
    parser.add_argument("--redis-url", default=REDIS_BASE_URL, help="Redis server URL, without a db number")
    parser.add_argument("--redis-db", type=int, default=DEFAULT_REDIS_DB, help="Redis db number to use and flush")
    parser.add_argument("--profile", type=Path, default=None, help="record the workers with py-spy into this folder")
    parser.add_argument("--serve-noop", metavar="BROKER_URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_noop:
        serve_noop(args.serve_noop)
        return
    run(args)


if __name__ == "__main__":
    main()
