"""The gallery page: thumbnails, captions, filters, keyset paging both ways, visibility, bad
input at the field, and a statement count per page that does not grow with the page (Postgres)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from farm.db.models import Asset, Render
from farm.db.session import transaction
from farm.review.service import decide
from tests.dashboard.conftest import login_as
from tests.dashboard.review_world import build_world, world  # noqa: F401
from tests.fixtures.assets import StatementCounter

ITEM = re.compile(r'data-testid="gallery-item" data-asset-id="(\d+)"')


def shown(response) -> list[int]:
    assert response.status_code == 200, response.text
    return [int(i) for i in ITEM.findall(response.text)]


@pytest.fixture(scope="module")
def gallery(world):
    """The shared campaign: a square job of 2 and a linkedin job of 2 (one approved); the hidden
    campaign: 2 assets."""
    square = world.assets(2, formats=["instagram_square"])
    linkedin = world.render_job(world.submit(world.campaign_id, ["bag"], [1, 2], ["linkedin"]))
    hidden = world.assets(2, world.hidden_campaign_id)
    with transaction(world.farm.session_factory) as session:
        decide(session, world.users["admin"], linkedin[0], "approve")
    return square, linkedin, hidden


def test_thumbnails_link_to_asset_pages_with_captions(world, gallery):
    square, linkedin, hidden = gallery
    response = world.client("reviewer").get("/gallery/")
    ids = shown(response)
    assert ids == sorted(square + linkedin, reverse=True)  # newest first, nothing hidden
    with transaction(world.farm.session_factory) as session:
        asset = session.get(Asset, linkedin[0])
        thumbnail, prompt = asset.thumbnail_key, asset.render.params["prompt"]
    html = response.text
    assert f'href="/assets/{linkedin[0]}"' in html
    assert f'src="/objects/{thumbnail}"' in html
    assert prompt in html and "linkedin" in html and "instagram_square" in html
    assert 'class="badge state-approved"' in html and 'class="badge state-pending"' in html
    # The thumbnail is served to the signed-in user.
    image = world.client("reviewer").get(f"/objects/{thumbnail}")
    assert image.status_code == 200 and image.data[:4] == b"RIFF"


def test_every_filter_narrows_the_page_and_the_form_keeps_it(world, gallery):
    square, linkedin, hidden = gallery
    client = world.client("admin")
    with transaction(world.farm.session_factory) as session:
        job_of = {a.id: a.job_id for a in session.scalars(select(Asset).where(Asset.id.in_(square + linkedin)))}
        model_id = session.get(Asset, square[0]).model_id
    cases = [
        (f"campaign_id={world.hidden_campaign_id}", sorted(hidden, reverse=True)),
        (f"job_id={job_of[square[0]]}", sorted(square, reverse=True)),
        ("approval_state=approved", [linkedin[0]]),
        (f"channel_format=linkedin&campaign_id={world.campaign_id}", sorted(linkedin, reverse=True)),
        (f"job_id={job_of[linkedin[0]]}&approval_state=pending", [linkedin[1]]),
    ]
    for query, expected in cases:
        response = client.get(f"/gallery/?{query}")
        got = shown(response)
        assert [i for i in got if i in square + linkedin + hidden] == expected, query
    everything = shown(client.get(f"/gallery/?model_id={model_id}&limit=200"))
    assert set(square + linkedin + hidden) <= set(everything)
    kept = client.get(f"/gallery/?campaign_id={world.campaign_id}&approval_state=approved&channel_format=linkedin").text
    assert f'<option value="{world.campaign_id}" selected>' in kept
    assert '<option value="approved" selected>' in kept and '<option value="linkedin" selected>' in kept
    assert 'Clear filters' in kept


def test_a_campaign_filter_shows_review_and_export_actions_by_permission(world, gallery):
    url = f"/gallery/?campaign_id={world.campaign_id}"
    manager = world.client("campaign_manager").get(url).text
    assert 'data-testid="export-approved"' in manager and f"/exports/campaigns/{world.campaign_id}" in manager
    assert f'/review/?campaign_id={world.campaign_id}' in manager
    reviewer = world.client("reviewer").get(url).text
    assert 'data-testid="export-approved"' not in reviewer and "Review pending" in reviewer
    ops = world.client("ops").get(url).text
    assert "Review pending" not in ops and "export-approved" not in ops


def test_hidden_campaign_is_not_found_and_its_assets_never_shown(world, gallery):
    _, _, hidden = gallery
    client = world.client("reviewer")
    assert not set(hidden) & set(shown(client.get("/gallery/?limit=200")))
    assert client.get(f"/gallery/?campaign_id={world.hidden_campaign_id}").status_code == 404
    assert world.client("outsider").get("/gallery/").text.count('data-testid="gallery-item"') == 0
    assert "No assets yet" in world.client("outsider").get("/gallery/").text


@pytest.mark.parametrize("query, field", [
    ("approval_state=great", "approval_state"),
    ("job_id=abc", "job_id"),
    ("campaign_id=-3", "campaign_id"),
    ("model_id=1.5", "model_id"),
    ("channel_format=" + "x" * 65, "channel_format"),
    ("limit=0", "limit"),
    ("limit=500", "limit"),
    ("before=soon", "before"),
    ("after=0", "after"),
    ("after=3&before=9", "after"),
])
def test_bad_filters_are_shown_at_the_field(world, gallery, query, field):
    response = world.client("reviewer").get(f"/gallery/?{query}")
    assert response.status_code == 400
    assert f'id="{field}-error"' in response.text or f"{field}: " in response.text
    assert 'data-testid="gallery-item"' not in response.text
    assert 'data-testid="gallery-filters"' in response.text  # the form is there to fix it


def _follow(client, url, link):
    response = client.get(url)
    ids = shown(response)
    match = re.search(rf'<a href="([^"]+)" rel="(?:next|prev)" data-testid="{link}"', response.text)
    return ids, match.group(1).replace("&amp;", "&") if match else None


def test_older_and_newer_links_walk_every_page_both_ways(world, gallery):
    client = world.client("reviewer")
    everything = shown(client.get("/gallery/?limit=200"))
    assert len(everything) >= 4
    pages, url = [], "/gallery/?limit=2"
    while url:
        ids, older = _follow(client, url, "older")
        pages.append((url, ids))
        url = older
    assert [i for _, ids in pages for i in ids] == everything
    assert all(len(ids) == 2 for _, ids in pages[:-1])
    assert "limit=2" in pages[-1][0] and "before=" in pages[-1][0]
    # Back again with "newer": the same pages, in reverse, to the first page (which has no newer link).
    url = pages[-1][0]
    for _, expected in reversed(pages[:-1]):
        _, newer = _follow(client, url, "newer")
        assert newer and "after=" in newer and "limit=2" in newer
        assert shown(client.get(newer)) == expected
        url = newer
    _, newer = _follow(client, url, "newer")
    assert newer is None
    # Filters stay on the paging links.
    response = client.get(f"/gallery/?limit=1&campaign_id={world.campaign_id}")
    assert f"campaign_id={world.campaign_id}" in re.search(r'href="([^"]+)" rel="next"', response.text).group(1)


def _clone(farm, asset_id: int, copies: int, start: int) -> None:
    """Copies of an asset as if rendered again (new render and asset rows, the same stored image):
    cheap rows for a full page. Fine for a page-size test; the images of real renders are tested above."""
    with transaction(farm.session_factory) as session:
        source = session.get(Asset, asset_id)
        render = source.render
        for n in range(copies):
            copy = Render(job_id=render.job_id, index=start + n, kind=render.kind, model_id=render.model_id,
                          params={**render.params, "seed": start + n}, state="succeeded", attempts=1,
                          rendered_by=render.rendered_by, started_at=render.started_at,
                          finished_at=render.finished_at)
            session.add(copy)
            session.flush()
            session.add(Asset(render_id=copy.id, campaign_id=source.campaign_id, job_id=source.job_id,
                              model_id=source.model_id, channel_format=source.channel_format,
                              storage_key=source.storage_key, sha256=source.sha256, size_bytes=source.size_bytes,
                              format=source.format, width=source.width, height=source.height,
                              thumbnail_key=source.thumbnail_key))


def test_statements_per_page_do_not_grow_with_the_page_on_postgres(postgres_app):
    """A page of 5 assets and a page of 60: the same number of SQL statements, for a user who sees
    every campaign, for one who sees some (per-campaign scans), with a filter, and on a deep page."""
    world = build_world(postgres_app.extensions["farm"], postgres_app)
    (first,) = world.assets(1)
    _clone(world.farm, first, 125, start=100)
    (other,) = world.assets(1, world.campaign("Second campaign"))
    _clone(world.farm, other, 125, start=100)
    counts = {}
    for role in ("admin", "reviewer"):
        client = world.client(role)
        for query in ("", f"campaign_id={world.campaign_id}&", "approval_state=pending&"):
            per_size = {}
            for size in (5, 60):
                client.get(f"/gallery/?{query}limit={size}")  # warm: the session's user, templates
                with StatementCounter(world.farm.db_engine) as counter:
                    response = client.get(f"/gallery/?{query}limit={size}")
                assert len(shown(response)) == size, (role, query, size)
                per_size[size] = counter.count
                older = re.search(r'href="([^"]+)" rel="next"', response.text).group(1).replace("&amp;", "&")
                with StatementCounter(world.farm.db_engine) as counter:
                    assert len(shown(client.get(older))) == size
                assert counter.count == per_size[size], (role, query, "deep page")
            assert per_size[5] == per_size[60], (role, query, per_size)
            counts[(role, query)] = per_size[5]
    # the user, the filter menus (2), the page (1; 2 for a campaign filter or a user who sees some campaigns)
    assert counts[("admin", "")] == 4
    assert counts[("reviewer", "")] == 5
    assert counts[("reviewer", f"campaign_id={world.campaign_id}&")] == 5


def test_newer_link_costs_one_statement_more(world, gallery):
    client = world.client("admin")
    first = shown(client.get("/gallery/?limit=2"))
    with StatementCounter(world.farm.db_engine) as plain:
        client.get(f"/gallery/?limit=2&before={first[-1]}")
    with StatementCounter(world.farm.db_engine) as newer:
        # Newer than the first page's last: the first page again.
        assert shown(client.get(f"/gallery/?limit=2&after={first[-1]}")) == first
    assert newer.count == plain.count + 1


def test_signed_out_visitors_are_sent_to_sign_in(world):
    response = world.app.test_client().get("/gallery/?approval_state=pending")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login?next=")


def test_nav_shows_gallery_and_review_by_permission(client):
    login_as(client, "ops")
    html = client.get("/gallery/").text
    assert 'href="/gallery/"' in html and 'href="/review/"' not in html
