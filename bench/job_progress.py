"""How much a job page's live progress costs on Postgres, for a job of 10,000 renders.

The script, in one run on this machine:
  - creates a fresh Postgres database (farm_bench_<random>, dropped at the end) and migrates it;
  - submits one job of `--renders` renders (default 10,000) with farm.jobs.batch.submit_batch, then
    puts it in motion: 90% succeeded an hour ago, `--running` renders running (one per busy GPU),
    the rest queued; adds `--other-jobs` finished jobs of the same size beside it (the renders
    table of a farm that has run a while: the job is a small part of it); VACUUM ANALYZE;
  - times, each call in its own transaction as the event stream makes it, `--repeats` times:
      poll       read_progress since a cursor (what the event stream and progress.json do every
                 0.5 s per watcher): the job, counts per state, the renders that may have changed;
      page       job_detail + the first page of list_renders (the job page itself);
      full       read_progress without a cursor (every render: an EventSource's first connect
                 without a cursor, or a changed held count);
      naive      for comparison, what "compare every render's state and step" would read each
                 time: SELECT id, state, progress_step, progress_total of every render of the job;
  - counts the statements of a poll and the renders it returns.
Prints p50 / p95 in milliseconds per scenario and a RESULT line.

    python bench/job_progress.py [--renders 10000] [--running 4] [--other-jobs 20] [--repeats 50] [--keep]

Postgres: RENDERFARM_BENCH_POSTGRES_URL, else RENDERFARM_TEST_POSTGRES_URL as for the tests,
else postgresql://postgres@127.0.0.1:5432/postgres (an admin connection that may create databases).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import psycopg  # noqa: E402
from sqlalchemy import event, select, text, update  # noqa: E402

from farm.accounts.service import create_user  # noqa: E402
from farm.campaigns.service import create_campaign_as  # noqa: E402
from farm.context import FarmContext, prepare_database  # noqa: E402
from farm.db.base import utcnow  # noqa: E402
from farm.db.models import Render  # noqa: E402
from farm.db.session import transaction  # noqa: E402
from farm.jobs.batch import BatchRequest, submit_batch  # noqa: E402
from farm.jobs.progress import job_detail, list_renders, read_progress  # noqa: E402
from farm.settings import load_settings  # noqa: E402
from farm.templates.service import create_campaign_template  # noqa: E402

POSTGRES_ADMIN_URL = (os.environ.get("RENDERFARM_BENCH_POSTGRES_URL")
                      or os.environ.get("RENDERFARM_TEST_POSTGRES_URL")
                      or "postgresql://postgres@127.0.0.1:5432/postgres")


def _timed(repeats: int, call) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return times


def _line(name: str, times: list[float]) -> str:
    p95 = sorted(times)[max(0, int(len(times) * 0.95) - 1)]
    return f"{name:<8} p50 {statistics.median(times):7.2f} ms   p95 {p95:7.2f} ms"


def _submit(ctx: FarmContext, renders: int) -> tuple[int, object]:
    with transaction(ctx.session_factory) as session:
        owner = create_user(session, name="bench", role="admin")
        campaign_id = create_campaign_as(session, owner, name="Bench", brand="Bench").id
        version_id = create_campaign_template(
            session, owner, campaign_id, name="bench", body="{{ product }} on a table", variables=["product"],
            default_params={"steps": 20, "width": 512, "height": 512}).id
    seeds = max(1, -(-renders // ctx.settings.max_rows_per_job))
    rows = [{"product": f"product {i}"} for i in range(renders // seeds)]
    job_id = submit_batch(ctx, owner, BatchRequest(campaign_id=campaign_id, template_version_id=version_id,
                                                   rows=rows, seeds=list(range(1, seeds + 1)), formats=[])).job_id
    return job_id, owner


def _in_motion(ctx: FarmContext, job_id: int, running: int) -> None:
    hour_ago = utcnow() - timedelta(hours=1)
    with transaction(ctx.session_factory) as session:
        ids = list(session.scalars(select(Render.id).where(Render.job_id == job_id).order_by(Render.index)))
        done = ids[: len(ids) * 9 // 10]
        session.execute(update(Render).where(Render.id.in_(done)).values(
            state="succeeded", started_at=hour_ago, finished_at=hour_ago, progress_step=20, rendered_by="gpu:0"))
        session.execute(update(Render).where(Render.id.in_(ids[len(done):len(done) + running])).values(
            state="running", started_at=hour_ago, progress_step=7, lease_owner="gpu:1",
            lease_expires_at=utcnow() + timedelta(minutes=5)))


def _other_jobs(ctx: FarmContext, url: str, job_id: int, copies: int) -> None:
    """Finished jobs beside it, as on a farm that has run for a while (copies of its rows)."""
    with transaction(ctx.session_factory) as session:
        session.execute(text(
            "INSERT INTO jobs (campaign_id, template_version_id, model_id, kind, variable_rows, seeds, formats,"
            " params, priority, status, created_at, finished_at)"
            " SELECT campaign_id, template_version_id, model_id, kind, '[]', seeds, formats, params, priority,"
            " 'succeeded', created_at, created_at FROM jobs, generate_series(1, :copies) WHERE id = :job"),
            {"copies": copies, "job": job_id})
        session.execute(text(
            "INSERT INTO renders (job_id, index, kind, model_id, params, state, attempts, progress_step,"
            " progress_total, queued_at, started_at, finished_at)"
            " SELECT j.id, r.index, r.kind, r.model_id, r.params, 'succeeded', 1, r.progress_total,"
            " r.progress_total, r.queued_at, r.queued_at, r.queued_at"
            " FROM renders r JOIN jobs j ON j.id <> r.job_id WHERE r.job_id = :job"), {"job": job_id})
    with psycopg.connect(url, autocommit=True) as conn:  # as autovacuum would have by now
        conn.execute("VACUUM ANALYZE renders")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--renders", type=int, default=10_000)
    parser.add_argument("--running", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--other-jobs", type=int, default=20, help="finished jobs of the same size in the table")
    parser.add_argument("--keep", action="store_true", help="leave the database in place")
    args = parser.parse_args()

    name = f"farm_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    home = Path(tempfile.mkdtemp(prefix="farm-bench-"))
    ctx = FarmContext(load_settings({"FARM_HOME": str(home), "FARM_DATABASE_URL": url, "FARM_SECRET_KEY": "b" * 40,
                                     "FARM_RENDER_ENGINE": "instant"}))
    try:
        prepare_database(ctx)
        started = time.perf_counter()
        job_id, user = _submit(ctx, args.renders)
        print(f"submitted {args.renders:,} renders in {time.perf_counter() - started:.1f} s")
        _in_motion(ctx, job_id, args.running)
        _other_jobs(ctx, url, job_id, args.other_jobs)
        print(f"{args.other_jobs} other jobs of {args.renders:,} finished renders each beside it")
        with transaction(ctx.session_factory) as session:
            cursor = read_progress(session, job_id, None).cursor

        statements: list[str] = []

        def count(conn, cursor_, statement, *rest):
            statements.append(statement)

        event.listen(ctx.db_engine, "before_cursor_execute", count)
        with transaction(ctx.session_factory) as session:
            polled = read_progress(session, job_id, cursor)
        event.remove(ctx.db_engine, "before_cursor_execute", count)
        print(f"a poll: {len(statements)} statements, {len(polled.renders)} renders returned "
              f"(of {polled.totals.renders:,})")

        def poll():
            with transaction(ctx.session_factory) as session:
                read_progress(session, job_id, cursor)

        def page():
            with transaction(ctx.session_factory) as session:
                job_detail(session, user, job_id)
                list_renders(session, user, job_id)

        def full():
            with transaction(ctx.session_factory) as session:
                read_progress(session, job_id, None)

        def naive():
            with transaction(ctx.session_factory) as session:
                session.execute(select(Render.id, Render.state, Render.progress_step, Render.progress_total)
                                .where(Render.job_id == job_id)).all()

        results = {label: _timed(args.repeats, call) for label, call in
                   (("poll", poll), ("page", page), ("full", full), ("naive", naive))}
        for label, times in results.items():
            print(_line(label, times))
        print(f"RESULT renders={args.renders} poll_p50_ms={statistics.median(results['poll']):.2f} "
              f"page_p50_ms={statistics.median(results['page']):.2f} "
              f"full_p50_ms={statistics.median(results['full']):.2f} "
              f"naive_p50_ms={statistics.median(results['naive']):.2f} poll_statements={len(statements)}")
    finally:
        ctx.db_engine.dispose()
        if args.keep:
            print(f"kept {url}")
        else:
            with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    sys.exit(main())
