"""Campaign export: a ZIP of the approved assets with a manifest that matches the database."""

import csv
import hashlib
import io
import json
import zipfile

import pytest
from sqlalchemy import select

from farm.db.models import Asset, AuditEvent, Job, RegisteredModel, Render
from farm.db.session import transaction
from farm.errors import InvalidInput, NotFound
from farm.exports.campaign_zip import MANIFEST_COLUMNS, ExportFailed, export_campaign
from farm.review.rerender import submit_rerender
from farm.review.service import bulk_approve, decide
from tests.fixtures.assets import AssetMaker, add_member, make_user


class Unseekable(io.RawIOBase):
    """A write-only stream that cannot seek or tell, like an HTTP response body."""

    def __init__(self):
        self.chunks: list[bytes] = []

    def writable(self):
        return True

    def write(self, data):
        self.chunks.append(bytes(data))
        return len(data)

    def getvalue(self) -> bytes:
        return b"".join(self.chunks)


@pytest.fixture
def campaign(embedded_farm):
    """Spring with four assets: two approved (by different reviewers, one after a rejection),
    one rejected, one with changes requested and re-rendered (version 2, approved)."""
    ctx = embedded_farm
    maker = AssetMaker(ctx)
    manager = make_user(ctx, "mia", "campaign_manager")
    reviewer = make_user(ctx, "rob", "reviewer")
    spring = maker.campaign("Spring", owner=manager)
    add_member(ctx, spring, reviewer)
    first, second = maker.assets(spring, ["shoe"], [11, 12], channel_format="instagram_square")
    rejected, redo = maker.assets(spring, ["=bag"], [13, 14])
    with transaction(ctx.session_factory) as session:
        decide(session, reviewer, second, "reject", "too dark")
        bulk_approve(session, manager, [first])
        decide(session, reviewer, second, "approve")
        decide(session, reviewer, rejected, "reject", "off brand")
        decide(session, reviewer, redo, "request_changes", "new seed")
    job_id = submit_rerender(ctx, reviewer, redo, {"seed": 99})
    with transaction(ctx.session_factory) as session:
        render_id = session.scalar(select(Render.id).where(Render.job_id == job_id))
    (version_2,) = maker.run([render_id])
    with transaction(ctx.session_factory) as session:
        decide(session, manager, version_2, "approve", "good")
    return ctx, spring, {"manager": manager, "reviewer": reviewer}, \
        {"first": first, "second": second, "rejected": rejected, "redo": redo, "version_2": version_2}


def _export(ctx, user, campaign_id, out=None):
    out = out or io.BytesIO()
    with transaction(ctx.session_factory) as session:
        summary = export_campaign(session, ctx.storage, user, campaign_id, out)
    return summary, out.getvalue()


def test_export_holds_the_approved_images_and_a_manifest_that_matches_the_database(campaign):
    ctx, spring, users, assets = campaign
    summary, data = _export(ctx, users["reviewer"], spring)
    approved = [assets["first"], assets["second"], assets["version_2"]]
    assert summary.assets == 3 and summary.campaign_name == "Spring"
    assert summary.filename.startswith(f"Spring-{spring}-approved-") and summary.filename.endswith(".zip")

    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.testzip() is None
    with transaction(ctx.session_factory) as session:
        rows = {a.id: (a, a.render.params) for a in session.scalars(select(Asset).where(Asset.id.in_(approved)))}
        model = session.scalars(select(RegisteredModel).where(RegisteredModel.name == "tiny-sd")).one()
    expected_files = [f"images/{assets['first']}_instagram_square_11.png",
                      f"images/{assets['second']}_instagram_square_12.png",
                      f"images/{assets['version_2']}_64x64_99.png"]
    assert archive.namelist() == expected_files + ["manifest.csv", "manifest.json", "LICENSES.txt"]
    assert summary.files == expected_files

    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["campaign"]["name"] == "Spring" and manifest["exported_by"] == "rob"
    assert manifest["columns"] == list(MANIFEST_COLUMNS)
    csv_rows = list(csv.DictReader(io.StringIO(archive.read("manifest.csv").decode())))
    assert [r["file"] for r in csv_rows] == [r["file"] for r in manifest["assets"]] == expected_files
    for entry, csv_row in zip(manifest["assets"], csv_rows):
        asset, params = rows[entry["asset_id"]]
        png = archive.read(entry["file"])
        assert hashlib.sha256(png).hexdigest() == asset.sha256 == entry["sha256"] == csv_row["sha256"]
        assert png == ctx.storage.get(asset.storage_key)
        assert (entry["width"], entry["height"], entry["channel_format"]) == (asset.width, asset.height, asset.channel_format)
        assert (entry["prompt"], entry["negative_prompt"], entry["seed"]) == (
            params["prompt"], params["negative_prompt"], params["seed"])
        assert (entry["model"], entry["model_sha256"], entry["license"]) == ("tiny-sd", model.sha256, "Apache-2.0")
        assert (entry["parent_asset_id"], entry["version"]) == (asset.parent_asset_id, asset.version)
        assert set(csv_row) == set(MANIFEST_COLUMNS)
        assert (csv_row["seed"], csv_row["model_sha256"], csv_row["version"]) == (
            str(params["seed"]), model.sha256, str(asset.version))
        assert csv_row["channel_format"] == (asset.channel_format or "")

    by_id = {e["asset_id"]: e for e in manifest["assets"]}
    # Approvals: who made the asset approved, and when; a rejection before them is not one.
    assert [a["reviewer"] for a in by_id[assets["first"]]["approvals"]] == ["mia"]
    assert [a["reviewer"] for a in by_id[assets["second"]]["approvals"]] == ["rob"]
    assert by_id[assets["second"]]["approvals"][0]["approved_at"].endswith("Z")
    v2 = by_id[assets["version_2"]]
    assert (v2["parent_asset_id"], v2["version"], v2["seed"]) == (assets["redo"], 2, 99)
    assert v2["prompt"] == "=bag on sand"
    v2_csv = next(r for r in csv_rows if r["asset_id"] == str(assets["version_2"]))
    assert v2_csv["prompt"] == "'=bag on sand"  # a spreadsheet shows it, never runs it
    assert v2_csv["parent_asset_id"] == str(assets["redo"]) and v2_csv["approvals"].startswith("mia 20")

    with transaction(ctx.session_factory) as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "campaign.exported")).one()
    assert (event.entity_id, event.actor_name) == (str(spring), "rob")
    assert event.after["assets"] == 3 and sorted(event.after["asset_ids"]) == sorted(approved)


def test_export_streams_to_an_unseekable_output(campaign):
    ctx, spring, users, _ = campaign
    out = Unseekable()
    with transaction(ctx.session_factory) as session:
        summary = export_campaign(session, ctx.storage, users["manager"], spring, out)
    archive = zipfile.ZipFile(io.BytesIO(out.getvalue()))
    assert archive.testzip() is None
    assert len(archive.namelist()) == summary.assets + 3  # manifest.csv, manifest.json, LICENSES.txt
    assert len(out.chunks) > summary.assets  # written as it went, not in one piece at the end


def test_campaign_without_approved_assets_is_a_clear_error(embedded_farm):
    ctx = embedded_farm
    maker = AssetMaker(ctx)
    admin = make_user(ctx, "ada", "admin")
    empty = maker.campaign("Empty")
    (asset_id,) = maker.assets(empty, ["shoe"], [1])
    with transaction(ctx.session_factory) as session:
        decide(session, admin, asset_id, "reject", "no")
    with pytest.raises(InvalidInput) as caught:
        _export(ctx, admin, empty)
    assert caught.value.field == "campaign"
    with transaction(ctx.session_factory) as session:
        assert session.scalars(select(AuditEvent).where(AuditEvent.action == "campaign.exported")).all() == []


def test_campaign_the_user_cannot_see_is_not_found(campaign):
    ctx, spring, _, _ = campaign
    outsider = make_user(ctx, "otto", "reviewer")
    with pytest.raises(NotFound):
        _export(ctx, outsider, spring)
    with pytest.raises(NotFound):
        _export(ctx, outsider, 424242)


def test_an_image_that_does_not_match_its_record_stops_the_export(campaign):
    ctx, spring, users, assets = campaign
    with transaction(ctx.session_factory) as session:
        key = session.get(Asset, assets["second"]).storage_key
    ctx.storage.put(key, b"\x89PNG not the image", "image/png")
    with pytest.raises(ExportFailed):
        _export(ctx, users["manager"], spring)
    with transaction(ctx.session_factory) as session:
        assert session.scalars(select(AuditEvent).where(AuditEvent.action == "campaign.exported")).all() == []
        assert session.scalar(select(Job.id).where(Job.campaign_id == spring)) is not None
