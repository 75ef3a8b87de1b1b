"""How fast the gallery pages with 100,000 assets in Postgres: list_assets latency and queries.

The script, in one run on this machine:
  - creates a fresh Postgres database (farm_bench_<random>, dropped at the end) and migrates it;
  - inserts `--assets` assets (default 100,000) with their jobs and renders by COPY, spread the
    way a busy farm spreads them: campaigns of very different sizes (a few big, a long tail),
    jobs of 20 to 80 renders, four models (most assets from one), six channel formats and some
    without one, approval states 60% pending / 25% approved / 10% rejected / 5% changes
    requested (the newest tenth mostly pending), campaigns that run for weeks and end (so an old
    campaign's assets lie far below the newest ids), a legacy model retired a third of the way
    in, and 1 in 20 assets a re-render (version 2+) of an earlier one; then ANALYZE;
  - times `farm.assets.gallery.list_assets`, each call in its own transaction as a web request
    makes it, `--repeats` times per scenario: the first page, page 50 reached through cursors,
    each filter alone (campaign, job, approval state, model, channel format), deep filtered pages,
    two filters at once, a reviewer who sees three campaigns; and the asset page
    (farm.assets.detail.asset_detail, with its lineage query) of a new and an old re-render;
  - counts the SQL statements of each page (a `before_cursor_execute` listener on the engine);
  - EXPLAINs the campaign-filter pages (first and deep): the plan must walk the (campaign_id, id)
    index backwards and stop after a page, never sort the campaign's assets. Exits 1 if not.
Prints p50 / p95 in milliseconds per scenario and a RESULT line.

    python bench/gallery.py [--assets 100000] [--repeats 40] [--page-size 48] [--keep]

Postgres: RENDERFARM_BENCH_POSTGRES_URL, else RENDERFARM_TEST_POSTGRES_URL as for the tests,
else postgresql://postgres@127.0.0.1:5432/postgres (an admin connection that may create databases).
--keep leaves the database in place (its URL is printed) to look at plans by hand.

Each scenario is also timed as the dashboard's HTML gallery page (/gallery/?<the scenario's
query string>, a Flask test client signed in as its user; HtmlGallery), with the SQL statements of
the whole request; --no-html leaves it out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urlencode

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import psycopg  # noqa: E402
from sqlalchemy import event, select, text  # noqa: E402

from farm.assets.detail import asset_detail  # noqa: E402
from tests.fixtures.databases import scratch_database  # noqa: E402
from farm.assets.gallery import GalleryFilters, list_assets  # noqa: E402
from farm.db import migrate  # noqa: E402
from farm.db.base import Base  # noqa: E402
from farm.db.models import (  # noqa: E402
    Campaign, CampaignMember, License, PromptTemplate, RegisteredModel, TemplateVersion, User,
)
from farm.db.session import make_engine, make_session_factory, transaction  # noqa: E402
from farm.licenses.registry import seed_licenses  # noqa: E402

POSTGRES_ADMIN_URL = (os.environ.get("RENDERFARM_BENCH_POSTGRES_URL")
                      or os.environ.get("RENDERFARM_TEST_POSTGRES_URL")
                      or "postgresql://postgres@127.0.0.1:5432/postgres")
FORMATS = ["instagram_square", "instagram_story", "facebook_link", "linkedin", "youtube_thumbnail", "display_mrec"]
FORMAT_SIZES = {"instagram_square": (1080, 1080), "instagram_story": (1080, 1920), "facebook_link": (1200, 628),
                "linkedin": (1200, 627), "youtube_thumbnail": (1280, 720), "display_mrec": (300, 250)}
STATES = (["pending"] * 60) + (["approved"] * 25) + (["rejected"] * 10) + (["changes_requested"] * 5)
MODELS = [("sd15-base", 70), ("brand-style-xl", 20), ("photoreal-v5", 7), ("legacy-v1", 10)]
LEGACY_MODEL = "legacy-v1"
PRODUCTS = ["running shoe", "leather bag", "wool hat", "espresso machine", "city bike", "desk lamp", "watch"]
BACKGROUNDS = ["sand dunes at dawn", "a marble kitchen counter", "a neon-lit street in the rain",
               "soft studio light on grey paper", "an alpine meadow", "a sunlit loft with plants"]
CAMPAIGNS = 24
REVIEWER_CAMPAIGNS = 3
# A page's plan may read at most this many asset rows per row it returns (filters that the index
# does not cover throw some away); more means it wanders through the table.
READ_BUDGET = 20


class BenchFailed(Exception):
    """A plan or a figure is not what the gallery needs; the message says what."""


# -- the data set --------------------------------------------------------------------------------

@dataclass
class Dataset:
    """What was inserted, for choosing scenarios: ids by kind, and the campaigns' sizes."""

    admin_id: int
    reviewer_id: int
    campaign_sizes: dict[int, int]
    campaign_ends: dict[int, float]  # when each campaign stopped rendering (fraction of the period)
    reviewer_campaigns: list[int]
    model_ids: dict[str, int]
    jobs: list[tuple[int, int]]  # (job id, asset count)
    assets: int
    rerenders: list[tuple[int, int]] = field(default_factory=list)  # (asset id, campaign id), oldest first
    seconds: float = 0.0


def _copy(cur, table: str, rows: list[dict[str, Any]]) -> None:
    """COPY rows into a table. Columns a row does not name get the model's scalar or callable
    default (as the ORM would give them), so a column added to the schema later, with a default,
    needs no change here; JSON columns are encoded, times written in ISO 8601."""
    columns = Base.metadata.tables[table].columns
    named = list(rows[0])
    defaults = {}
    for column in columns:
        if column.name in named or column.default is None:
            continue
        arg = column.default.arg
        defaults[column.name] = arg(None) if callable(arg) else arg
    names = named + list(defaults)
    with cur.copy(f"COPY {table} ({', '.join(names)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([_copy_value(value) for value in [*row.values(), *defaults.values()]])


def _copy_value(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _campaign_weights(count: int) -> list[float]:
    # A few big campaigns and a long tail (1/rank); the first, which runs throughout, less.
    return [0.3] + [1 / (rank + 1) for rank in range(1, count)]


def _campaign_windows(rng: random.Random, count: int) -> list[tuple[float, float]]:
    """When each campaign renders, as fractions of the whole period: campaigns run for weeks and
    end, so an old campaign's assets all sit far below the newest ids (the case where walking the
    primary key backwards from the newest asset to find a campaign's page is slowest). The first
    campaign runs throughout, so some campaign is always active."""
    windows = [(0.0, 1.0)]
    for _ in range(count - 1):
        begin = rng.uniform(0.0, 0.85)
        windows.append((begin, min(1.0, begin + rng.uniform(0.1, 0.4))))
    return windows


def _approval_state(rng: random.Random, age_fraction: float) -> str:
    """Recent assets wait for review; older ones have mostly been decided."""
    if age_fraction > 0.9:
        return "pending" if rng.random() < 0.9 else rng.choice(STATES)
    return rng.choice(STATES)


def seed_gallery(database_url: str, assets: int, *, seed: int = 7) -> Dataset:
    """Migrate the (empty) database and fill it with `assets` assets; return what went in."""
    started = time.perf_counter()
    rng = random.Random(seed)
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    factory = make_session_factory(engine)
    now = datetime.now(timezone.utc)
    start = now - timedelta(days=90)
    # The few rows of the small tables through the ORM, so the models' defaults fill every
    # column the bench does not name (the schema grows; the bench should not break with it).
    with transaction(factory) as session:
        seed_licenses(session)
        licenses = list(session.scalars(select(License.id).order_by(License.id)))
        admin = User(name="bench-admin", role="admin")
        reviewer = User(name="bench-reviewer", role="reviewer")
        models = [RegisteredModel(name=name, kind="checkpoint", architecture="sd1", uri=f"/models/{name}",
                                  sha256=f"{number:02x}" * 32, license_id=licenses[number % len(licenses)],
                                  created_at=start)
                  for number, (name, _) in enumerate(MODELS)]
        campaigns = [Campaign(name=f"Campaign {number + 1:02d}", brand=f"Brand {number % 7}",
                              channel_formats=rng.sample(FORMATS, 3), created_at=start)
                     for number in range(CAMPAIGNS)]
        session.add_all([admin, reviewer, *models, *campaigns])
        session.flush()
        admin_id, reviewer_id = admin.id, reviewer.id
        model_ids = {model.name: model.id for model in models}
        campaign_ids = [campaign.id for campaign in campaigns]
        reviewer_campaigns = campaign_ids[1:1 + REVIEWER_CAMPAIGNS]  # a big one and two middling ones
        session.add_all([CampaignMember(campaign_id=c, user_id=reviewer_id, added_at=start) for c in reviewer_campaigns])
        versions = {}
        for campaign in campaigns:
            template = PromptTemplate(campaign_id=campaign.id, name="hero shot", created_at=start)
            version = TemplateVersion(template=template, version=1, body="{{ product }} on {{ background }}",
                                      negative_body="text, watermark", variables=["product", "background"],
                                      created_at=start)
            session.add_all([template, version])
            session.flush()
            versions[campaign.id] = version.id
    engine.dispose()

    with psycopg.connect(database_url) as conn:
        cur = conn.cursor()
        jobs, job_rows, render_rows, asset_rows = [], [], [], []
        weights = _campaign_weights(CAMPAIGNS)
        windows = _campaign_windows(rng, CAMPAIGNS)
        made = 0
        job_id = render_id = 0
        step = (now - start) / assets
        campaign_assets: dict[int, list[int]] = {}
        rerenders = []
        versions_of: dict[int, int] = {}  # asset id (= render id here) -> version
        while made < assets:
            job_id += 1
            moment_fraction = made / assets
            active = [i for i, (begin, end) in enumerate(windows) if begin <= moment_fraction <= end] or [0]
            campaign_id = campaign_ids[rng.choices(active, [weights[i] for i in active])[0]]
            # The legacy model was retired a third of the way in; the others share the rest.
            usable = [(n, w) for n, w in MODELS if n != LEGACY_MODEL or moment_fraction < 0.33]
            model = rng.choices([n for n, _ in usable], [w for _, w in usable])[0]
            channel = rng.choice(FORMATS + [None])
            width, height = FORMAT_SIZES.get(channel, (512, 512))
            count = min(rng.randint(20, 80), assets - made)
            created = start + step * made
            params = {"steps": 30, "cfg_scale": 7.0, "sampler": "DPM++ 2M Karras", "width": 512, "height": 512}
            job_rows.append(dict(id=job_id, campaign_id=campaign_id, template_version_id=versions[campaign_id],
                                 model_id=model_ids[model], kind="txt2img", variable_rows=[], seeds=[],
                                 formats=[channel] if channel else [], params=params, priority=5,
                                 status="succeeded", submitted_by_id=admin_id, created_at=created,
                                 finished_at=created + timedelta(minutes=10)))
            jobs.append((job_id, count))
            for index in range(count):
                render_id += 1
                made += 1
                moment = start + step * made
                prompt = f"{rng.choice(PRODUCTS)} on {rng.choice(BACKGROUNDS)}, studio photograph, brand colours"
                render_params = {**params, "prompt": prompt, "negative_prompt": "text, watermark",
                                 "seed": rng.randrange(2**32), "variable_row": 0}
                if channel:
                    render_params["format"] = channel
                render_rows.append(dict(id=render_id, job_id=job_id, index=index, kind="txt2img",
                                        model_id=model_ids[model], params=render_params, state="succeeded",
                                        attempts=1, rendered_by="gpu-host-1:0", progress_step=30, progress_total=30,
                                        queued_at=moment, started_at=moment, finished_at=moment))
                siblings = campaign_assets.setdefault(campaign_id, [])
                parent, version = None, 1
                if siblings and rng.random() < 0.05:
                    # A re-render of a recent asset of the campaign: one version more than it.
                    parent = rng.choice(siblings[-200:])
                    version = versions_of[parent] + 1
                    rerenders.append((render_id, campaign_id))
                versions_of[render_id] = version
                digest = f"{render_id:064x}"
                asset_rows.append(dict(id=render_id, render_id=render_id, campaign_id=campaign_id, job_id=job_id,
                                       model_id=model_ids[model], channel_format=channel,
                                       storage_key=f"images/{digest[:2]}/{digest[2:4]}/{digest}.png", sha256=digest,
                                       size_bytes=900_000 + render_id % 50_000, format="png", width=width,
                                       height=height, thumbnail_key=f"thumbnails/{digest[:2]}/{digest[2:4]}/{digest}.webp",
                                       approval_state=_approval_state(rng, made / assets), parent_asset_id=parent,
                                       version=version, created_at=moment))
                siblings.append(render_id)
        sizes = {c: len(ids) for c, ids in campaign_assets.items()}

        for table, rows in (("jobs", job_rows), ("renders", render_rows), ("assets", asset_rows)):
            _copy(cur, table, rows)
        cur.execute("UPDATE renders SET parent_asset_id = assets.parent_asset_id FROM assets "
                    "WHERE assets.render_id = renders.id AND assets.parent_asset_id IS NOT NULL")
        for table in ("jobs", "renders", "assets"):
            cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
    return Dataset(admin_id=admin_id, reviewer_id=reviewer_id, campaign_sizes=sizes,
                   campaign_ends={c: windows[i][1] for i, c in enumerate(campaign_ids) if c in sizes},
                   reviewer_campaigns=reviewer_campaigns, model_ids=model_ids, jobs=jobs, assets=made,
                   rerenders=rerenders, seconds=time.perf_counter() - started)


# -- what is timed ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Scenario:
    name: str
    user: str                    # "admin" or "reviewer"
    filters: GalleryFilters
    page: int = 1                # reached by following cursors from page 1
    before: int | None = None    # filled in once the cursor for `page` is known

    def query_string(self, limit: int) -> str:
        """The query string of this page's URL in the dashboard (for timing the HTML page)."""
        args = {**self.filters.active(), "limit": limit}
        if self.before is not None:
            args["before"] = self.before
        return urlencode(args)


def scenarios(data: Dataset) -> list[Scenario]:
    by_size = sorted(data.campaign_sizes, key=data.campaign_sizes.get, reverse=True)
    biggest, smallest = by_size[0], by_size[-1]
    big_job = max(data.jobs, key=lambda job: job[1])[0]
    legacy_model = data.model_ids[LEGACY_MODEL]
    oldest = min(data.campaign_ends, key=data.campaign_ends.get)
    return [
        Scenario("first page", "admin", GalleryFilters()),
        Scenario("page 50 (cursor)", "admin", GalleryFilters(), page=50),
        Scenario("campaign (biggest)", "admin", GalleryFilters(campaign_id=biggest)),
        Scenario("campaign (smallest)", "admin", GalleryFilters(campaign_id=smallest)),
        Scenario("campaign (ended first)", "admin", GalleryFilters(campaign_id=oldest)),
        Scenario("campaign, page 50", "admin", GalleryFilters(campaign_id=biggest), page=50),
        Scenario("job", "admin", GalleryFilters(job_id=big_job)),
        Scenario("state approved", "admin", GalleryFilters(approval_state="approved")),
        Scenario("state changes_requested, page 20", "admin", GalleryFilters(approval_state="changes_requested"), page=20),
        Scenario("model (retired long ago)", "admin", GalleryFilters(model_id=legacy_model)),
        Scenario("channel format", "admin", GalleryFilters(channel_format="linkedin")),
        Scenario("format, page 50", "admin", GalleryFilters(channel_format="linkedin"), page=50),
        Scenario("campaign + state", "admin", GalleryFilters(campaign_id=biggest, approval_state="changes_requested")),
        Scenario("campaign + retired model", "admin", GalleryFilters(campaign_id=biggest, model_id=legacy_model)),
        Scenario("reviewer, first page", "reviewer", GalleryFilters()),
        Scenario("reviewer, campaign page 20", "reviewer", GalleryFilters(campaign_id=data.reviewer_campaigns[0]), page=20),
    ]


def checked_scenarios(data: Dataset) -> list[Scenario]:
    """The pages whose plans are checked: the campaign filter (a big, a small, an old campaign,
    deep pages) and a reviewer's unfiltered page (their campaigns only)."""
    return [s for s in scenarios(data) if s.filters.active().keys() == {"campaign_id"}
            or (s.user == "reviewer" and not s.filters.active())]


class StatementLog:
    """The statements an engine runs (transaction control is not counted)."""

    def __init__(self, engine):
        self.statements: list[tuple[str, Any]] | None = None
        event.listen(engine, "before_cursor_execute", self._heard)

    def _heard(self, conn, cursor, statement, parameters, context, executemany):
        if self.statements is not None and statement.split(None, 1)[0].upper() not in ("BEGIN", "COMMIT", "ROLLBACK", "SET"):
            self.statements.append((statement, parameters))

    @contextmanager
    def recording(self) -> Iterator[list[tuple[str, Any]]]:
        self.statements = []
        try:
            yield self.statements
        finally:
            self.statements = None


def core_page(factory, user, scenario: Scenario, limit: int):
    with transaction(factory) as session:
        return list_assets(session, user, scenario.filters, before=scenario.before, limit=limit)


class HtmlGallery:
    """The dashboard's real gallery page (/gallery/), fetched with a Flask test client signed in
    through the sign-in form as the scenario's user, over this database: the whole request
    (session, filter menus, the page's queries, the template) as a browser would get it, less the
    network. Thumbnails are only named in the HTML, not fetched."""

    PASSWORD = "bench password, long enough"

    def __init__(self, database_url: str, users: dict[str, User], home: Path):
        from dashboard.app import create_app
        from farm.accounts.service import set_password
        from farm.context import FarmContext
        from farm.settings import load_settings

        settings = load_settings({"FARM_HOME": str(home), "FARM_DATABASE_URL": database_url,
                                  "FARM_SECRET_KEY": "b" * 40})
        self.home = home
        self.farm = FarmContext(settings)
        with transaction(self.farm.session_factory) as session:
            for user in users.values():
                set_password(session, session.get(User, user.id), self.PASSWORD)
        self.app = create_app(self.farm, {"TESTING": True})
        self.clients = {role: self._signed_in(user.name) for role, user in users.items()}
        self.log = StatementLog(self.farm.db_engine)

    def _signed_in(self, name: str):
        client = self.app.test_client()
        form = client.get("/login").text
        token = form.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        response = client.post("/login", data={"csrf_token": token, "name": name, "password": self.PASSWORD})
        if response.status_code != 302:
            raise BenchFailed(f"could not sign in as {name}: {response.status_code}")
        return client

    def url(self, scenario: Scenario, limit: int) -> str:
        return "/gallery/?" + scenario.query_string(limit)

    def __call__(self, scenario: Scenario, limit: int) -> int:
        response = self.clients[scenario.user].get(self.url(scenario, limit))
        if response.status_code != 200:
            raise BenchFailed(f"{scenario.name}: {self.url(scenario, limit)} answered {response.status_code}")
        return len(response.data)

    def statements(self, scenario: Scenario, limit: int) -> int:
        """SQL statements of one page request (all of them: the user, menus, the page)."""
        with self.log.recording() as statements:
            self(scenario, limit)
        return len(statements)

    def close(self) -> None:
        self.farm.db_engine.dispose()
        shutil.rmtree(self.home, ignore_errors=True)


def page_fetchers(factory, users: dict[str, User], limit: int,
                  html: HtmlGallery | None = None) -> dict[str, Callable[[Scenario], Any]]:
    """What is timed for each scenario: the core service (`list_assets`, one transaction) and,
    given `html`, the dashboard's HTML gallery page for the same scenario (the same query string).
    Every fetcher is timed over the same scenarios and reported side by side."""
    fetchers: dict[str, Callable[[Scenario], Any]] = {
        "list_assets": lambda s: core_page(factory, users[s.user], s, limit)}
    if html is not None:
        fetchers["html page"] = lambda s: html(s, limit)
    return fetchers


def with_cursor(factory, users, scenario: Scenario, limit: int) -> Scenario:
    """The scenario with `before` set so that it fetches its page (cursors from page 1)."""
    before = None
    for pages in range(1, scenario.page):
        page = core_page(factory, users[scenario.user], Scenario(scenario.name, scenario.user, scenario.filters,
                                                                 before=before), limit)
        if not page.has_more:
            raise BenchFailed(f"{scenario.name}: only {pages} pages of {limit}; seed more assets")
        before = page.next_cursor
    return Scenario(scenario.name, scenario.user, scenario.filters, scenario.page, before)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def timed(fetch: Callable[[], Any], repeats: int) -> list[float]:
    fetch()  # warm: plan cache, connection
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fetch()
        times.append((time.perf_counter() - start) * 1000)
    return times


# -- the plan check -----------------------------------------------------------------------------

def plan_nodes(plan: dict) -> Iterator[dict]:
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)


def asset_rows_read(plan: dict) -> int:
    """Asset rows an EXPLAIN ANALYZE plan read: those it kept and those its filters threw away."""
    return sum((n.get("Actual Rows", 0) + n.get("Rows Removed by Filter", 0)) * n.get("Actual Loops", 1)
               for n in plan_nodes(plan) if n.get("Relation Name") == "assets")


def plan_problems(plan: dict, limit: int) -> list[str]:
    """Why a page's plan would not stay fast as the table grows (EXPLAIN (ANALYZE, FORMAT JSON)'s
    top "Plan" node): a sequential scan of the assets, assets not read through an index, many more
    asset rows read than the page shows (READ_BUDGET per row), or a sort of that many rows."""
    nodes = list(plan_nodes(plan))
    budget = READ_BUDGET * (limit + 1)
    problems = []
    for node in nodes:
        if "Sort" in node["Node Type"]:
            rows = sum(c.get("Actual Rows", 0) * c.get("Actual Loops", 1) for c in node.get("Plans", []))
            if rows > budget:
                problems.append(f"{node['Node Type']} of {rows} rows on {node.get('Sort Key')}")
    problems += [f"{n['Node Type']} on assets" for n in nodes
                 if n.get("Relation Name") == "assets" and not n["Node Type"].startswith("Index")]
    if not any(n.get("Relation Name") == "assets" and n["Node Type"].startswith("Index") for n in nodes):
        problems.append("assets are not read through an index")
    read = asset_rows_read(plan)
    if read > budget:
        problems.append(f"{read} asset rows read for a page of {limit}")
    return problems


def explain(engine, statement: str, parameters: Any, analyze: bool = False) -> dict:
    options = "ANALYZE, BUFFERS, FORMAT JSON" if analyze else "FORMAT JSON"
    with engine.connect() as conn:
        (result,) = conn.exec_driver_sql(f"EXPLAIN ({options}) {statement}", parameters).one()
    return (result if isinstance(result, list) else json.loads(result))[0]


def page_plan(engine, log: StatementLog, factory, user, scenario: Scenario, limit: int, analyze: bool = False) -> dict:
    """EXPLAIN of the page's own SELECT, exactly as list_assets sent it."""
    with log.recording() as statements:
        core_page(factory, user, scenario, limit)
    statement, parameters = next(s for s in statements if "FROM assets" in s[0] and "ORDER BY assets.id DESC" in s[0])
    return explain(engine, statement, parameters, analyze)


def summarise(plan: dict) -> str:
    top = plan["Plan"]
    scans = [f"{n['Node Type']} using {n['Index Name']}" for n in plan_nodes(top) if n.get("Index Name")
             and n.get("Relation Name") == "assets"]
    return (f"{'; '.join(scans) or top['Node Type']}, {asset_rows_read(top)} asset rows read, "
            f"{plan.get('Execution Time', 0):.2f} ms")


# -- the run --------------------------------------------------------------------------------------

def run(database_url: str, assets: int, repeats: int, limit: int, out=print,
        with_html: bool = True) -> dict[str, Any]:
    out(f"seeding {assets} assets ...")
    data = seed_gallery(database_url, assets)
    out(f"seeded {data.assets} assets in {len(data.jobs)} jobs over {len(data.campaign_sizes)} campaigns "
        f"(largest {max(data.campaign_sizes.values())}, smallest {min(data.campaign_sizes.values())}) "
        f"in {data.seconds:.1f} s")
    engine = make_engine(database_url)
    factory = make_session_factory(engine)
    with transaction(factory) as session:
        users = {"admin": session.get(User, data.admin_id), "reviewer": session.get(User, data.reviewer_id)}
        member_of = session.scalars(select(CampaignMember.campaign_id)).all()
        server = session.scalar(text("SHOW server_version"))
    assert sorted(member_of) == sorted(data.reviewer_campaigns)
    log = StatementLog(engine)
    out(f"machine: {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"PostgreSQL {server}; page size {limit}, {repeats} timed calls per scenario")

    failures = []
    for scenario in checked_scenarios(data):
        name = scenario.name
        plan = page_plan(engine, log, factory, users[scenario.user], with_cursor(factory, users, scenario, limit),
                         limit, analyze=True)
        problems = plan_problems(plan["Plan"], limit)
        out(f"plan  {name:<36} {summarise(plan)}{'  PROBLEM: ' + ', '.join(problems) if problems else ''}")
        failures += [f"{name}: {p}" for p in problems]

    results: dict[str, Any] = {}
    html = HtmlGallery(database_url, users, Path(tempfile.mkdtemp(prefix="farm-bench-home-"))) if with_html else None
    fetchers = page_fetchers(factory, users, limit, html)
    out(f"{'scenario':<44}{'fetcher':<14}{'p50 ms':>8}{'p95 ms':>8}{'queries':>9}{'items':>7}")
    for scenario in scenarios(data):
        scenario = with_cursor(factory, users, scenario, limit)
        with log.recording() as statements:
            page = core_page(factory, users[scenario.user], scenario, limit)
        queries = len(statements)
        for fetcher_name, fetch in fetchers.items():
            times = timed(lambda: fetch(scenario), repeats)
            p50, p95 = statistics.median(times), percentile(times, 0.95)
            # The HTML page's own statements: the signed-in user and the filter menus besides the page.
            count = html.statements(scenario, limit) if fetcher_name == "html page" else queries
            results[f"{scenario.name} / {fetcher_name}"] = {"p50_ms": p50, "p95_ms": p95, "queries": count}
            out(f"{scenario.name:<44}{fetcher_name:<14}{p50:>8.2f}{p95:>8.2f}{count:>9}{len(page.items):>7}")

    # The asset page of a re-render (its lineage query walks up to the root, then down through
    # the campaign's newer assets): the newest and the oldest re-render of the biggest campaign.
    biggest = max(data.campaign_sizes, key=data.campaign_sizes.get)
    ours = [asset_id for asset_id, campaign_id in data.rerenders if campaign_id == biggest]
    for label, asset_id in (("newest", ours[-1]), ("oldest", ours[0])):
        def detail(asset_id=asset_id):
            with transaction(factory) as session:
                return asset_detail(session, users["admin"], asset_id)

        with log.recording() as statements:
            versions = len(detail().versions)
        times = timed(detail, repeats)
        p50, p95 = statistics.median(times), percentile(times, 0.95)
        name = f"asset page, {label} re-render"
        results[name] = {"p50_ms": p50, "p95_ms": p95, "queries": len(statements)}
        out(f"{name + f' ({versions} versions)':<44}{'asset_detail':<14}{p50:>8.2f}{p95:>8.2f}{len(statements):>9}")
    engine.dispose()
    if html is not None:
        html.close()

    # The first RESULT line is the core service's (list_assets); the HTML page has its own below.
    pages = {name: r for name, r in results.items()
             if not name.startswith("asset page") and not name.endswith("/ html page")}
    worst = max(pages.values(), key=lambda r: r["p95_ms"])
    first = results["first page / list_assets"]
    out(f"RESULT assets={data.assets} first_page_p50_ms={first['p50_ms']:.2f} first_page_p95_ms={first['p95_ms']:.2f} "
        f"worst_page_p95_ms={worst['p95_ms']:.2f} max_queries_per_page={max(r['queries'] for r in pages.values())} "
        f"asset_page_oldest_p50_ms={results['asset page, oldest re-render']['p50_ms']:.2f}")
    if html is not None:
        html_pages = {name: r for name, r in results.items() if name.endswith("/ html page")}
        html_first = results["first page / html page"]
        out(f"RESULT html first_page_p50_ms={html_first['p50_ms']:.2f} first_page_p95_ms={html_first['p95_ms']:.2f} "
            f"worst_page_p95_ms={max(r['p95_ms'] for r in html_pages.values()):.2f} "
            f"statements_per_page={sorted({r['queries'] for r in html_pages.values()})}")
    if failures:
        raise BenchFailed("; ".join(failures))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--assets", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--page-size", type=int, default=48)
    parser.add_argument("--keep", action="store_true", help="keep the database (prints its URL)")
    parser.add_argument("--no-html", action="store_true", help="time list_assets only, not the dashboard's HTML page")
    args = parser.parse_args(argv)
    try:
        with scratch_database(POSTGRES_ADMIN_URL, "farm_bench", keep=args.keep) as url:
            if args.keep:
                print(f"database kept: {url}")
            run(url, args.assets, args.repeats, args.page_size, with_html=not args.no_html)
    except BenchFailed as error:
        print(f"FAILED: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
