"""What license compliance costs on the worker's hot path, on a real Postgres.

Prints, for a fresh throwaway database (farm_bench_<random>, dropped at the end):
  1. a worker's one-row bookkeeping transaction (as the finish commits it: synchronous_commit off),
     alone and with one audit event appended in it (what writing `render.succeeded` inside every
     finish would add): median and p95 latency from one thread, and transactions per second from
     `--threads` threads at once (the audit log's append lock serialises them);
  2. the batched alternative the farm uses (farm.audit.renders): writing `--renders` pending render
     events in batches of 500: total and per-render time;
  3. the policy re-check the worker makes at every lease (farm.licenses.policy.evaluate on a chain
     of one checkpoint from the worker's terms cache), in microseconds;
  4. the hash check before a model load: sha256 throughput on a `--hash-mib` file, and the stat-only
     check of an unchanged tiny-model folder (what a re-load of a verified model costs).

    python bench/audit_cost.py [--samples 300] [--threads 4] [--renders 2000] [--hash-mib 256]

Service: RENDERFARM_TEST_POSTGRES_URL as for the tests (default postgres@127.0.0.1:5432).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import psycopg  # noqa: E402
from sqlalchemy import insert, select, update  # noqa: E402

from farm.audit.log import record_event  # noqa: E402
from farm.audit.renders import seal_render_events  # noqa: E402
from farm.context import FarmContext, prepare_database  # noqa: E402
from farm.db.models import Campaign, Job, RegisteredModel, Render  # noqa: E402
from farm.db.session import make_engine, make_session_factory, transaction  # noqa: E402
from farm.licenses.policy import CampaignTerms, ChainEntry, ModelTermsCache, evaluate  # noqa: E402
from farm.models.hashing import HashVerifier, file_sha256, model_sha256  # noqa: E402
from farm.settings import load_settings  # noqa: E402

ADMIN_URL = os.environ.get("RENDERFARM_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def _bookkeeping(factory, render_ids, with_event: bool, counter) -> None:
    render_id = render_ids[next(counter) % len(render_ids)]
    with transaction(factory, durable=False) as session:
        session.execute(update(Render).where(Render.id == render_id).values(progress_step=Render.progress_step + 1)
                        .execution_options(synchronize_session=False))
        if with_event:
            record_event(session, action="render.succeeded", entity_type="render", entity_id=render_id,
                         after={"job_id": 1, "state": "succeeded", "worker": "bench"})


def _latencies(factory, render_ids, with_event: bool, samples: int) -> list[float]:
    import itertools

    counter = itertools.count()
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        _bookkeeping(factory, render_ids, with_event, counter)
        times.append(time.perf_counter() - start)
    return times


def _throughput(factory, render_ids, with_event: bool, threads: int, per_thread: int) -> float:
    import itertools

    counter = itertools.count()
    barrier = threading.Barrier(threads + 1)

    def run():
        barrier.wait()
        for _ in range(per_thread):
            _bookkeeping(factory, render_ids, with_event, counter)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait()
    start = time.perf_counter()
    for worker in workers:
        worker.join()
    return threads * per_thread / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--renders", type=int, default=2000)
    parser.add_argument("--hash-mib", type=int, default=256)
    args = parser.parse_args()

    name = f"farm_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    try:
        with tempfile.TemporaryDirectory() as home:
            ctx = FarmContext(load_settings({"FARM_HOME": home, "FARM_DATABASE_URL": url}))
            prepare_database(ctx)
            with transaction(ctx.session_factory) as session:
                model = session.scalar(select(RegisteredModel).where(RegisteredModel.name == "tiny-sd"))
                campaign = Campaign(name="bench", brand="bench", commercial_use=True)
                session.add(campaign)
                session.flush()
                from farm.templates.service import get_or_create_template

                version = get_or_create_template(session, name="bench", body="{{ prompt }}")
                job = Job(campaign_id=campaign.id, template_version_id=version.id, model_id=model.id, params={})
                session.add(job)
                session.flush()
                render_ids = session.scalars(insert(Render).returning(Render.id), [
                    {"job_id": job.id, "index": i, "model_id": model.id, "params": {"seed": i}, "state": "queued"}
                    for i in range(args.renders)]).all()
                model_id, model_version, model_path = model.id, model.policy_version, Path(model.uri)
            worker_factory = make_session_factory(make_engine(url, commits_wait_for_disk=False))

            print(f"1. worker bookkeeping transaction, {args.samples} samples from one thread:")
            for label, with_event in (("alone", False), ("with an audit event", True)):
                _latencies(worker_factory, render_ids, with_event, 20)  # warm the pool
                times = sorted(_latencies(worker_factory, render_ids, with_event, args.samples))
                print(f"   {label:<22} median {_ms(statistics.median(times))}, "
                      f"p95 {_ms(times[int(len(times) * 0.95) - 1])}")
            for label, with_event in (("alone", False), ("with an audit event", True)):
                rate = _throughput(worker_factory, render_ids, with_event, args.threads, args.samples // 2)
                print(f"   {args.threads} threads, {label:<22} {rate:,.0f} transactions/s")

            with transaction(ctx.session_factory) as session:
                session.execute(update(Render).where(Render.id.in_(render_ids)).values(state="succeeded",
                                                                                       audited_state=None))
            start = time.perf_counter()
            written = seal_render_events(ctx.session_factory)
            elapsed = time.perf_counter() - start
            print(f"2. sealing {written} render events in batches of 500: {_ms(elapsed)} in all, "
                  f"{elapsed / max(written, 1) * 1e6:.0f} us per render, off the hot path")

            cache = ModelTermsCache()
            with transaction(ctx.session_factory) as session:
                terms = cache.get(session, model_id, model_version)
                cache.get(session, model_id, model_version)
            chain = [ChainEntry("checkpoint", "model", terms)]
            campaign_terms = CampaignTerms(id=1, name="", commercial=True)
            rounds = 20000
            start = time.perf_counter()
            for _ in range(rounds):
                evaluate(chain, campaign_terms, organisation_revenue_usd=None)
            per = (time.perf_counter() - start) / rounds
            print(f"3. policy re-check at lease (cached terms, one checkpoint): {per * 1e6:.1f} us "
                  f"(terms loaded from the database {cache.loads} time(s) for {rounds + 2} checks)")

            big = Path(home) / "weights.safetensors"
            with big.open("wb") as handle:
                block = os.urandom(1 << 20)
                for _ in range(args.hash_mib):
                    handle.write(block)
            start = time.perf_counter()
            file_sha256(big)
            elapsed = time.perf_counter() - start
            print(f"4. sha256 of a {args.hash_mib} MiB file: {elapsed:.2f} s ({args.hash_mib / elapsed:,.0f} MiB/s; "
                  f"a 2 GiB SD 1.5 fp16 checkpoint: about {2048 / (args.hash_mib / elapsed):.1f} s, once per "
                  "worker process)")
            verifier = HashVerifier()
            sha = model_sha256(model_path)
            verifier.verify("tiny-sd", model_path, sha)
            start = time.perf_counter()
            for _ in range(200):
                verifier.verify("tiny-sd", model_path, sha)
            print(f"   re-check of an unchanged model folder ({len(list(model_path.rglob('*')))} entries), stat only: "
                  f"{(time.perf_counter() - start) / 200 * 1e6:.0f} us; models hashed: {verifier.models_hashed}")
            ctx.db_engine.dispose()
            worker_factory.kw["bind"].dispose()
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    sys.exit(main())
