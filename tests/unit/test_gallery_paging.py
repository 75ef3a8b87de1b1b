"""Paging the gallery back to newer assets (farm.assets.paging.before_for_newer): the cursor it
gives shows exactly the page before, under every filter and for users who see only some
campaigns."""

import shutil

import pytest

from farm.assets.gallery import GalleryFilters, list_assets
from farm.assets.paging import before_for_newer
from farm.context import FarmContext, prepare_database
from farm.db.models import Asset
from farm.db.session import transaction
from farm.errors import InvalidInput, NotFound
from farm.render.tiny_model import TINY_MODEL_NAME
from farm.settings import load_settings
from tests.fixtures.assets import AssetMaker, add_member, make_user


@pytest.fixture(scope="module")
def gallery(tmp_path_factory, tiny_model_dir):
    """Spring: 5 assets in two jobs, the reviewer is a member; Autumn: 2 assets, hidden from the
    reviewer, rendered between Spring's jobs so that its ids interleave. Made once: the tests
    only read."""
    home = tmp_path_factory.mktemp("paging") / "farm-data"
    shutil.copytree(tiny_model_dir, home / "models" / TINY_MODEL_NAME)
    ctx = FarmContext(load_settings({"FARM_HOME": str(home)}))
    prepare_database(ctx)
    maker = AssetMaker(ctx)
    admin = make_user(ctx, "ada", "admin")
    reviewer = make_user(ctx, "rob", "reviewer")
    spring = maker.campaign("Spring")
    autumn = maker.campaign("Autumn")
    add_member(ctx, spring, reviewer)
    first = maker.assets(spring, ["shoe"], [1, 2, 3])
    hidden = maker.assets(autumn, ["hat"], [7, 8])
    second = maker.assets(spring, ["bag"], [4, 5], channel_format="linkedin")
    yield ctx, admin, reviewer, spring, first, hidden, second
    ctx.db_engine.dispose()


def _pages(ctx, user, filters, limit):
    """Every page walking older, as (before, [ids]) pairs."""
    pages, before = [], None
    while True:
        with transaction(ctx.session_factory) as session:
            page = list_assets(session, user, filters, before=before, limit=limit)
        pages.append((before, [item.asset_id for item in page.items]))
        if not page.has_more:
            return pages
        before = page.next_cursor


@pytest.mark.parametrize("who, filters", [
    ("admin", None),
    ("reviewer", None),
    ("admin", "spring"),
    ("admin", GalleryFilters(approval_state="pending")),
    ("reviewer", GalleryFilters(channel_format="linkedin")),
])
@pytest.mark.parametrize("limit", [1, 2, 3])
def test_newer_cursor_shows_the_page_before(gallery, who, filters, limit):
    ctx, admin, reviewer, spring, *_ = gallery
    user = {"admin": admin, "reviewer": reviewer}[who]
    filters = GalleryFilters(campaign_id=spring) if filters == "spring" else filters
    pages = _pages(ctx, user, filters, limit)
    for (before, _), (_, later_ids) in zip(pages, pages[1:]):
        with transaction(ctx.session_factory) as session:
            # From the page after it, "newer" leads back to the same cursor (None: the first page).
            assert before_for_newer(session, user, filters, later_ids[0], limit=limit) == before
    with transaction(ctx.session_factory) as session:
        # Nothing newer than the newest: the first page.
        assert before_for_newer(session, user, filters, pages[0][1][0], limit=limit) is None


def test_newer_never_counts_hidden_assets(gallery):
    ctx, _, reviewer, _, first, hidden, second = gallery
    with transaction(ctx.session_factory) as session:
        # Newer than Spring's oldest, for the reviewer: Spring's 4 others (Autumn's 2 do not count).
        assert before_for_newer(session, reviewer, None, first[0], limit=3) == second[1]
        assert before_for_newer(session, reviewer, None, first[0], limit=4) is None


def test_bad_cursor_limit_and_hidden_campaign(gallery):
    ctx, _, reviewer, _, first, hidden, _ = gallery
    autumn = GalleryFilters(campaign_id=None)
    with transaction(ctx.session_factory) as session:
        for after, limit, field in [("x", 5, "after"), (0, 5, "after"), (True, 5, "after"), (None, 5, "after"),
                                    (first[0], 0, "limit"), (first[0], 500, "limit"), (first[0], "5", "limit")]:
            with pytest.raises(InvalidInput) as caught:
                before_for_newer(session, reviewer, autumn, after, limit=limit)
            assert caught.value.field == field, (after, limit)
        with pytest.raises(InvalidInput) as caught:
            before_for_newer(session, reviewer, GalleryFilters(approval_state="great"), first[0])
        assert caught.value.field == "approval_state"
    with transaction(ctx.session_factory) as session:
        autumn_id = session.get(Asset, hidden[0]).campaign_id
        with pytest.raises(NotFound):
            before_for_newer(session, reviewer, GalleryFilters(campaign_id=autumn_id), first[0])
