"""Gallery, review and export on real Postgres: a constant query count per page, index plans
at scale, row locks for concurrent reviewers, seeds past Postgres' INTEGER; and bench/gallery.py
still runs end to end (small), so the benchmark cannot rot unnoticed."""

import io
import re
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import select

from farm.assets.detail import asset_detail
from farm.assets.gallery import GalleryFilters, list_assets
from farm.context import FarmContext, prepare_database
from farm.db.models import Asset, Render, Review, User
from farm.db.session import make_engine, make_session_factory, transaction
from farm.errors import InvalidInput
from farm.exports.campaign_zip import export_campaign
from farm.review.rerender import submit_rerender
from farm.review.service import bulk_approve, decide
from farm.settings import load_settings
from tests.conftest import embedded_environ
from tests.fixtures.assets import AssetMaker, StatementCounter, add_member, make_user

pytestmark = pytest.mark.integration

BENCH = Path(__file__).resolve().parents[2] / "bench" / "gallery.py"
sys.path.insert(0, str(BENCH.parent))
import gallery as gallery_bench  # noqa: E402


@pytest.fixture
def pg_farm(farm_home, postgres_url):
    """A farm on Postgres (folder storage, embedded broker): migrated, tiny model registered."""
    ctx = FarmContext(load_settings(embedded_environ(farm_home, FARM_DATABASE_URL=postgres_url)))
    prepare_database(ctx)
    yield ctx
    ctx.db_engine.dispose()


def _page_queries(ctx, user, filters, limit):
    with transaction(ctx.session_factory) as session:
        with StatementCounter(ctx.db_engine) as counter:
            page = list_assets(session, user, filters, limit=limit)
    return counter.count, len(page.items)


def test_review_rerender_gallery_and_export_on_postgres(pg_farm):
    ctx = pg_farm
    maker = AssetMaker(ctx)
    admin = make_user(ctx, "ada", "admin")
    reviewer = make_user(ctx, "rob", "reviewer")
    small = maker.campaign("Small")
    big = maker.campaign("Big")
    add_member(ctx, small, reviewer)
    add_member(ctx, big, reviewer)
    few = maker.assets(small, ["shoe"], [1, 2, 3, 4, 4_000_000_000])  # a seed past 2**31 - 1
    many = maker.assets(big, ["bag", "hat", "cap"], list(range(20)), channel_format="linkedin")

    # The same number of statements for a page of 5 and a page of 60, per user and filter.
    for user in (admin, reviewer):
        for few_filters, many_filters in [(None, None),
                                          (GalleryFilters(campaign_id=small), GalleryFilters(campaign_id=big)),
                                          (GalleryFilters(approval_state="pending"), GalleryFilters(approval_state="pending"))]:
            assert _page_queries(ctx, user, few_filters, 5)[0] == _page_queries(ctx, user, many_filters, 60)[0]
            assert _page_queries(ctx, user, few_filters, 5)[1] == 5
            assert _page_queries(ctx, user, many_filters, 60)[1] == 60

    with transaction(ctx.session_factory) as session:
        page = list_assets(session, reviewer, GalleryFilters(campaign_id=small))
        assert [item.seed for item in page.items] == [4_000_000_000, 4, 3, 2, 1]
        bulk_approve(session, reviewer, few[:2])
        decide(session, reviewer, few[2], "request_changes", "brighter")
    job_id = submit_rerender(ctx, reviewer, few[2], {"prompt": "shoe on sand, bright", "seed": 4_100_000_000})
    with transaction(ctx.session_factory) as session:
        render_id = session.scalar(select(Render.id).where(Render.job_id == job_id))
    (version_2,) = maker.run([render_id])
    with transaction(ctx.session_factory) as session:
        decide(session, reviewer, version_2, "approve")
        detail = asset_detail(session, reviewer, few[2])
    assert [(v.asset_id, v.version, v.approval_state) for v in detail.versions] == [
        (few[2], 1, "changes_requested"), (version_2, 2, "approved")]

    out = io.BytesIO()
    with transaction(ctx.session_factory) as session:
        summary = export_campaign(session, ctx.storage, reviewer, small, out)
    archive = zipfile.ZipFile(out)
    assert summary.assets == 3 and archive.testzip() is None
    assert f"images/{version_2}_64x64_4100000000.png" in archive.namelist()


def test_concurrent_reviewers_are_serialised_and_each_decision_is_recorded(pg_farm):
    """Two reviewers deciding on the same assets at once: the row lock makes one wait, so each
    audit event's `before` is the state the other left, and no decision is lost."""
    ctx = pg_farm
    maker = AssetMaker(ctx)
    first, second = make_user(ctx, "ada", "admin"), make_user(ctx, "eve", "admin")
    campaign = maker.campaign("Spring")
    asset_ids = maker.assets(campaign, ["shoe"], [1, 2, 3])
    holding = threading.Event()
    release = threading.Event()

    def slow_reviewer():
        with transaction(ctx.session_factory) as session:
            bulk_approve(session, first, asset_ids)
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=slow_reviewer)
    thread.start()
    assert holding.wait(30)
    outcome = {}

    def other_reviewer():
        with transaction(ctx.session_factory) as session:
            outcome["record"] = decide(session, second, asset_ids[1], "reject", "not on brand")

    other = threading.Thread(target=other_reviewer)
    other.start()
    other.join(1.0)
    assert other.is_alive()  # waiting for the first reviewer's row lock
    release.set()
    thread.join(30)
    other.join(30)
    with transaction(ctx.session_factory) as session:
        assert session.get(Asset, asset_ids[1]).approval_state == "rejected"
        decisions = session.execute(select(Review.decision, User.name).join(User, User.id == Review.reviewer_id)
                                    .where(Review.asset_id == asset_ids[1]).order_by(Review.id)).all()
    assert decisions == [("approve", "ada"), ("reject", "eve")]
    from farm.db.models import AuditEvent
    with transaction(ctx.session_factory) as session:
        events = session.scalars(select(AuditEvent).where(AuditEvent.action == "asset.reviewed",
                                                          AuditEvent.entity_id == str(asset_ids[1]))
                                 .order_by(AuditEvent.id)).all()
    assert [(e.before["approval_state"], e.after["approval_state"]) for e in events] == [
        ("pending", "approved"), ("approved", "rejected")]


def test_gallery_pages_are_index_range_scans_at_scale(postgres_url):
    """20,000 assets spread as a busy farm spreads them (bench/gallery.py's data): the campaign
    filter, first and deep pages, big, small and long-ended campaigns, and a reviewer's page,
    each read through the (campaign_id, id) index and only about a page of rows."""
    data = gallery_bench.seed_gallery(postgres_url, 20_000)
    engine = make_engine(postgres_url)
    factory = make_session_factory(engine)
    log = gallery_bench.StatementLog(engine)
    with transaction(factory) as session:
        users = {"admin": session.get(User, data.admin_id), "reviewer": session.get(User, data.reviewer_id)}
    limit = 20  # deep pages (50 of the biggest campaign, 20 of the reviewer's) exist in 20,000 assets
    checked = gallery_bench.checked_scenarios(data)
    assert {s.name for s in checked} >= {"campaign (biggest)", "campaign (smallest)", "campaign (ended first)",
                                         "campaign, page 50", "reviewer, first page"}
    for scenario in checked:
        scenario = gallery_bench.with_cursor(factory, users, scenario, limit)
        plan = gallery_bench.page_plan(engine, log, factory, users[scenario.user], scenario, limit, analyze=True)
        assert gallery_bench.plan_problems(plan["Plan"], limit) == [], (scenario.name, plan)
        indexes = {n.get("Index Name") for n in gallery_bench.plan_nodes(plan["Plan"])}
        assert "ix_assets_campaign_id_id" in indexes, (scenario.name, indexes)
        assert gallery_bench.asset_rows_read(plan["Plan"]) <= 4 * (limit + 1), scenario.name
    engine.dispose()


def test_bad_gallery_input_on_postgres_names_the_field(pg_farm):
    admin = make_user(pg_farm, "ada", "admin")
    with pytest.raises(InvalidInput) as caught:
        with transaction(pg_farm.session_factory) as session:
            list_assets(session, admin, GalleryFilters(approval_state="maybe"))
    assert caught.value.field == "approval_state"


def test_gallery_bench_completes_and_prints_its_figures(postgres_admin_url):
    result = subprocess.run([sys.executable, str(BENCH), "--assets", "6000", "--page-size", "10", "--repeats", "2"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    out = result.stdout
    figures = re.search(r"^RESULT assets=6000 first_page_p50_ms=([\d.]+) first_page_p95_ms=([\d.]+) "
                        r"worst_page_p95_ms=([\d.]+) max_queries_per_page=(\d+) asset_page_oldest_p50_ms=([\d.]+)$",
                        out, re.MULTILINE)
    assert figures, out
    assert all(float(value) > 0 for value in figures.groups())
    assert int(figures.group(4)) <= 2
    assert "PROBLEM" not in out
    # The dashboard's HTML gallery page, timed on the same scenarios: the user, the filter menus
    # and the page's one or two queries, whatever the page.
    html = re.search(r"^RESULT html first_page_p50_ms=([\d.]+) first_page_p95_ms=([\d.]+) "
                     r"worst_page_p95_ms=([\d.]+) statements_per_page=\[([\d, ]+)\]$", out, re.MULTILINE)
    assert html, out
    assert all(float(value) > 0 for value in html.groups()[:3])
    assert {int(n) for n in html.group(4).split(",")} <= {4, 5}
