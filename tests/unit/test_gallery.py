"""The gallery's list_assets on the embedded farm: order, keyset paging, filters, visibility,
and a query count per page that does not grow with the page."""

import pytest
from sqlalchemy import select, update

from farm.assets.gallery import CAPTION_LENGTH, GalleryFilters, filter_choices, list_assets
from farm.assets.lookup import jsonable
from farm.db.models import Asset, Campaign, RegisteredModel
from farm.db.session import transaction
from farm.errors import InvalidInput, NotFound
from farm.review.service import bulk_approve, decide
from tests.fixtures.assets import AssetMaker, StatementCounter, add_member, make_user


@pytest.fixture
def gallery(embedded_farm):
    """Spring: 6 assets in two jobs (instagram_square, then linkedin); Autumn: 3 assets, hidden
    from the reviewer."""
    ctx = embedded_farm
    maker = AssetMaker(ctx)
    admin = make_user(ctx, "ada", "admin")
    reviewer = make_user(ctx, "rob", "reviewer")
    spring = maker.campaign("Spring")
    autumn = maker.campaign("Autumn")
    add_member(ctx, spring, reviewer)
    square = maker.assets(spring, ["shoe"], [1, 2, 3], channel_format="instagram_square")
    linkedin = maker.assets(spring, ["bag"], [4, 5, 6], channel_format="linkedin")
    hidden = maker.assets(autumn, ["hat"], [7, 8, 9])
    return ctx, maker, admin, reviewer, spring, autumn, square, linkedin, hidden


def _page(ctx, user, filters=None, **options):
    with transaction(ctx.session_factory) as session:
        return list_assets(session, user, filters, **options)


def _all_pages(ctx, user, filters=None, limit=2):
    ids, before, pages = [], None, 0
    while True:
        page = _page(ctx, user, filters, before=before, limit=limit)
        pages += 1
        ids += [item.asset_id for item in page.items]
        if not page.has_more:
            assert page.next_cursor is None
            return ids, pages
        assert page.next_cursor == page.items[-1].asset_id
        before = page.next_cursor


def test_newest_first_with_keyset_pages_that_cover_everything_once(gallery):
    ctx, _, admin, _, _, _, square, linkedin, hidden = gallery
    everything = sorted(square + linkedin + hidden, reverse=True)
    assert [i.asset_id for i in _page(ctx, admin).items] == everything
    ids, pages = _all_pages(ctx, admin, limit=2)
    assert ids == everything and pages == 5
    ids, pages = _all_pages(ctx, admin, limit=3)  # the last page is full: has_more is still exact
    assert ids == everything and pages == 3


def test_items_carry_thumbnail_model_name_caption_and_format(gallery):
    ctx, _, admin, _, spring, _, square, _, _ = gallery
    item = next(i for i in _page(ctx, admin).items if i.asset_id == square[0])
    with transaction(ctx.session_factory) as session:
        asset = session.get(Asset, square[0])
        assert (item.thumbnail_key, item.storage_key) == (asset.thumbnail_key, asset.storage_key)
        assert (item.model_name, item.model_id) == ("tiny-sd", asset.model_id)
    assert (item.campaign_id, item.channel_format, item.seed, item.caption) == (spring, "instagram_square", 1, "shoe on sand")
    assert (item.width, item.height, item.approval_state, item.version) == (64, 64, "pending", 1)
    assert jsonable(_page(ctx, admin))["items"][0]["created_at"].startswith("20")


def test_each_filter_alone_and_combined(gallery):
    ctx, _, admin, _, spring, autumn, square, linkedin, hidden = gallery
    with transaction(ctx.session_factory) as session:
        decide(session, admin, square[1], "reject", "no")
        bulk_approve(session, admin, [linkedin[0], hidden[2]])
        job_of = {a: session.get(Asset, a).job_id for a in (square[0], hidden[0])}
        model_id = session.scalar(select(RegisteredModel.id).where(RegisteredModel.name == "tiny-sd"))

    def ids(**filters):
        return _all_pages(ctx, admin, GalleryFilters(**filters), limit=2)[0]

    desc = lambda values: sorted(values, reverse=True)  # noqa: E731
    assert ids(campaign_id=spring) == desc(square + linkedin)
    assert ids(campaign_id=autumn) == desc(hidden)
    assert ids(job_id=job_of[square[0]]) == desc(square)
    assert ids(job_id=job_of[hidden[0]]) == desc(hidden)
    assert ids(approval_state="approved") == desc([linkedin[0], hidden[2]])
    assert ids(approval_state="rejected") == [square[1]]
    assert ids(approval_state="changes_requested") == []
    assert ids(model_id=model_id) == desc(square + linkedin + hidden)
    assert ids(channel_format="linkedin") == desc(linkedin)
    assert ids(channel_format="display_mrec") == []
    assert ids(campaign_id=spring, approval_state="approved") == [linkedin[0]]
    assert ids(campaign_id=autumn, channel_format="linkedin") == []


def test_a_user_sees_only_the_campaigns_they_may(gallery):
    ctx, _, _, reviewer, spring, autumn, square, linkedin, _ = gallery
    assert _all_pages(ctx, reviewer)[0] == sorted(square + linkedin, reverse=True)
    with pytest.raises(NotFound):
        _page(ctx, reviewer, GalleryFilters(campaign_id=autumn))
    with pytest.raises(NotFound):
        _page(ctx, reviewer, GalleryFilters(campaign_id=999))
    outsider = make_user(ctx, "otto", "reviewer")
    assert _page(ctx, outsider).items == []
    choices = filter_choices_for(ctx, reviewer)
    assert [c.label for c in choices.campaigns] == ["Spring"]


def filter_choices_for(ctx, user):
    with transaction(ctx.session_factory) as session:
        return filter_choices(session, user)


def test_filter_choices_list_visible_campaigns_their_formats_models_and_states(gallery):
    ctx, _, admin, _, spring, _, _, _, _ = gallery
    with transaction(ctx.session_factory) as session:
        session.execute(update(Campaign).where(Campaign.id == spring).values(channel_formats=["linkedin", "instagram_square"]))
    choices = filter_choices_for(ctx, admin)
    assert [c.label for c in choices.campaigns] == ["Autumn", "Spring"]
    assert [c.value for c in choices.channel_formats] == ["instagram_square", "linkedin"]
    assert "tiny-sd" in [c.label for c in choices.models]
    assert [c.value for c in choices.approval_states] == ["pending", "approved", "rejected", "changes_requested"]


def test_bad_filters_and_paging_name_the_field(gallery):
    ctx, _, admin, _, _, _, _, _, _ = gallery
    cases = [
        (dict(filters=GalleryFilters(approval_state="done")), "approval_state"),
        (dict(filters=GalleryFilters(job_id=0)), "job_id"),
        (dict(filters=GalleryFilters(model_id="x")), "model_id"),
        (dict(limit=0), "limit"),
        (dict(limit=201), "limit"),
        (dict(before="abc"), "before"),
        (dict(before=-3), "before"),
    ]
    for options, field in cases:
        with pytest.raises(InvalidInput) as caught:
            _page(ctx, admin, options.pop("filters", None), **options)
        assert caught.value.field == field, options
    with pytest.raises(InvalidInput) as caught:
        GalleryFilters.from_query({"campaign_id": "one"})
    assert caught.value.field == "campaign_id"
    parsed = GalleryFilters.from_query({"campaign_id": "3", "job_id": "", "approval_state": "approved",
                                        "channel_format": " "})
    assert parsed == GalleryFilters(campaign_id=3, approval_state="approved")


def test_long_prompts_are_cut_for_captions(embedded_farm):
    ctx = embedded_farm
    maker = AssetMaker(ctx)
    admin = make_user(ctx, "ada", "admin")
    campaign = maker.campaign("Long")
    (asset_id,) = maker.assets(campaign, ["a very detailed description of a shoe " * 10], [1])
    (item,) = _page(ctx, admin).items
    assert item.asset_id == asset_id
    assert len(item.caption) == CAPTION_LENGTH and item.caption.endswith("…")
    assert item.caption.startswith("a very detailed description of a shoe a very")


def _statements_per_page(ctx, user, filters, limit):
    with transaction(ctx.session_factory) as session:
        with StatementCounter(ctx.db_engine) as counter:
            page = list_assets(session, user, filters, limit=limit)
    return counter.count, len(page.items)


def test_queries_per_page_do_not_grow_with_the_page(embedded_farm):
    """5 assets or 60 on a page: the same number of SQL statements (no query per thumbnail,
    model name or caption)."""
    ctx = embedded_farm
    maker = AssetMaker(ctx)
    admin = make_user(ctx, "ada", "admin")
    reviewer = make_user(ctx, "rob", "reviewer")
    first = maker.campaign("First")
    second = maker.campaign("Second")
    add_member(ctx, first, reviewer)
    add_member(ctx, second, reviewer)
    maker.assets(first, ["shoe"], [1, 2, 3, 4, 5])
    maker.assets(second, ["bag", "hat", "cap"], list(range(20)), channel_format="linkedin")

    counts = {}
    for user in (admin, reviewer):
        for filters in (None, GalleryFilters(campaign_id=first), GalleryFilters(approval_state="pending")):
            few = _statements_per_page(ctx, user, filters, limit=5)
            many = _statements_per_page(ctx, user, GalleryFilters(campaign_id=second) if filters and filters.campaign_id
                                        else filters, limit=60)
            assert few[1] == 5 and many[1] == 60, (few, many)
            assert few[0] == many[0], (user.role, filters, few, many)
            counts[(user.role, filters)] = few[0]
    assert counts[("admin", None)] == 1
    assert counts[("reviewer", None)] == 2  # which campaigns the reviewer sees, the page
    assert counts[("reviewer", GalleryFilters(campaign_id=first))] == 2  # the campaign's visibility, the page
