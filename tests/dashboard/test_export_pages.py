"""Exports through the pages: the export list, "Export approved" downloading the campaign's ZIP
(opened, its manifest checked against the database and its images against their sha256),
nothing approved, invisible campaigns, permission and stale forms."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import zipfile

import pytest
from sqlalchemy import func, select

from farm.db.models import Asset, AuditEvent
from farm.db.session import transaction
from farm.review.service import decide
from tests.dashboard.conftest import csrf_token
from tests.dashboard.review_world import world  # noqa: F401


def _exported_events(world) -> int:
    with transaction(world.farm.session_factory) as session:
        return session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "campaign.exported"))


@pytest.fixture(scope="module")
def approved(world):
    """A campaign with 3 assets: two approved (one by two reviewers), one rejected."""
    campaign = world.campaign("Export launch")
    ids = world.assets(3, campaign, formats=["linkedin"])
    with transaction(world.farm.session_factory) as session:
        decide(session, world.users["reviewer"], ids[0], "approve")
        decide(session, world.users["campaign_manager"], ids[0], "approve", "good to go")
        decide(session, world.users["reviewer"], ids[1], "approve")
        decide(session, world.users["reviewer"], ids[2], "reject", "off brand")
    return campaign, ids


def _export(client, campaign_id, **fields):
    return client.post(f"/exports/campaigns/{campaign_id}", data={"csrf_token": csrf_token(client), **fields})


def test_export_list_shows_visible_campaigns_with_approved_counts(world, approved):
    campaign, _ = approved
    page = world.client("campaign_manager").get("/exports/").text
    row = re.search(rf'<tr data-campaign-id="{campaign}"[^>]*>(.*?)</tr>', page, re.S).group(1)
    assert "Export launch" in row and "<td>2</td>" in row and f'data-testid="export-{campaign}"' in row
    assert "Secret autumn" not in page  # the manager cannot see it
    assert "Secret autumn" in world.client("auditor").get("/exports/").text
    assert "nothing approved yet" in page


def test_export_downloads_the_zip_with_its_manifest(world, approved):
    campaign, ids = approved
    events = _exported_events(world)
    response = _export(world.client("auditor"), campaign)
    assert response.status_code == 200, response.text
    assert response.mimetype == "application/zip"
    disposition = response.headers["Content-Disposition"]
    assert re.fullmatch(r'attachment; filename=Export-launch-\d+-approved-\d{8}T\d{6}Z\.zip', disposition), disposition
    assert response.headers["Cache-Control"] == "no-store"
    archive = zipfile.ZipFile(io.BytesIO(response.data))
    assert archive.testzip() is None
    names = archive.namelist()
    assert "manifest.csv" in names and "manifest.json" in names
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["campaign"]["id"] == campaign and manifest["exported_by"] == "auditor-review"
    rows = manifest["assets"]
    assert [row["asset_id"] for row in rows] == ids[:2]  # the approved ones, not the rejected one
    with transaction(world.farm.session_factory) as session:
        for row in rows:
            asset = session.get(Asset, row["asset_id"])
            params = asset.render.params
            image = archive.read(row["file"])
            assert hashlib.sha256(image).hexdigest() == asset.sha256 == row["sha256"]
            assert (row["prompt"], row["seed"], row["channel_format"]) == (params["prompt"], params["seed"], "linkedin")
            assert row["model"] == "tiny-sd" and row["model_sha256"] == asset.render.model.sha256
            assert row["license"] == "Apache-2.0"
    assert [a["reviewer"] for a in rows[0]["approvals"]] == ["reviewer-review", "campaign_manager-review"]
    table = list(csv.DictReader(io.StringIO(archive.read("manifest.csv").decode())))
    assert [int(r["asset_id"]) for r in table] == ids[:2]
    assert table[0]["file"] == rows[0]["file"] and "reviewer-review" in table[0]["approvals"]
    assert _exported_events(world) == events + 1


def test_export_button_on_the_gallery_downloads_the_zip(world, approved):
    campaign, _ = approved
    client = world.client("campaign_manager")
    page = client.get(f"/gallery/?campaign_id={campaign}").text
    form = re.search(r'<form method="post" action="([^"]+)" class="export-form">', page)
    assert form and form.group(1) == f"/exports/campaigns/{campaign}"
    next_value = re.search(r'class="export-form">.*?name="next" value="([^"]+)"', page, re.S).group(1)
    response = client.post(form.group(1), data={"csrf_token": csrf_token(client), "next": next_value})
    assert response.status_code == 200 and response.mimetype == "application/zip"


def test_nothing_approved_comes_back_with_a_message(world):
    campaign = world.campaign("Nothing approved")
    world.assets(1, campaign)
    client = world.client("campaign_manager")
    events = _exported_events(world)
    response = _export(client, campaign, next=f"/gallery/?campaign_id={campaign}")
    assert response.status_code == 302 and response.headers["Location"] == f"/gallery/?campaign_id={campaign}"
    page = client.get(response.headers["Location"]).text
    assert "Nothing to export" in page and "has no approved assets to export" in page
    assert _exported_events(world) == events
    # Without a next: back to the export list.
    assert _export(client, campaign).headers["Location"] == "/exports/"


def test_refusals_send_nothing_and_record_nothing(world, approved):
    campaign, _ = approved
    events = _exported_events(world)
    # a campaign the user cannot see: not found
    assert _export(world.client("campaign_manager"), world.hidden_campaign_id).status_code == 404
    assert _export(world.client("admin"), 999999).status_code == 404
    # a role without exports.create
    for role in ("reviewer", "ops"):
        assert _export(world.client(role), campaign).status_code == 403
        assert world.client(role).get("/exports/").status_code == 403
    # a stale form
    stale = world.client("auditor").post(f"/exports/campaigns/{campaign}", data={"csrf_token": "old"})
    assert stale.status_code == 400 and "stale" in stale.text
    assert _exported_events(world) == events


def test_a_corrupted_image_stops_the_export(world):
    campaign = world.campaign("Corrupted export")
    (asset_id,) = world.assets(1, campaign, products=["unique corrupted product"])
    with transaction(world.farm.session_factory) as session:
        decide(session, world.users["admin"], asset_id, "approve")
        key = session.get(Asset, asset_id).storage_key
    world.farm.storage.put(key, b"not the image", "image/png")
    events = _exported_events(world)
    client = world.client("admin")
    response = _export(client, campaign)
    assert response.status_code == 302
    assert "The export stopped and nothing was sent" in client.get(response.headers["Location"]).text
    assert _exported_events(world) == events
