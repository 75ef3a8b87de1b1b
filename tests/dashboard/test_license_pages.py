"""License pages: the list, one license's terms and models, adding and editing (admins), every bad
field named at the field with the values kept and nothing written, flagged assets after a change of
terms (shown on the asset page and in the gallery), refused roles, stale forms."""

from __future__ import annotations

import hashlib
import html
import io
import re

import pytest
from sqlalchemy import func, select

from farm.db.models import AuditEvent, License
from farm.db.session import transaction
from tests.dashboard.compliance_world import world  # noqa: F401

GOOD = {"identifier": "LicenseRef-Acme-Model", "name": "Acme model license", "url": "https://example.com/license",
        "text_sha256": "", "commercial_use": "allowed", "revenue_cap_usd": "", "attribution_required": "1",
        "attribution_text": "Made with Acme models", "use_restrictions": "No weapons\n\n  No deepfakes of real people ",
        "derivatives_inherit": "1"}


def field_error(page: str, field: str) -> str | None:
    match = re.search(rf'<p class="field-error" id="error-{re.escape(field)}"[^>]*role="alert">([^<]*)</p>', page)
    return html.unescape(match.group(1)) if match else None


def licenses_count(world) -> int:
    with transaction(world.farm.session_factory) as session:
        return session.scalar(select(func.count(License.id)))


def events(world, action: str) -> list[AuditEvent]:
    with transaction(world.farm.session_factory) as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


def test_the_list_shows_every_license_with_its_terms(world):
    page = world.client("reviewer").get("/licenses/")
    assert page.status_code == 200
    for identifier in ("CreativeML-OpenRAIL-M", "LicenseRef-Stability-AI-Community", "Apache-2.0",
                       "LicenseRef-FLUX.1-dev-Non-Commercial"):
        assert f'data-license="{identifier}"' in page.text
    community = re.search(r'<tr data-license="LicenseRef-Stability-AI-Community">(.*?)</tr>', page.text, re.S).group(1)
    assert "allowed under a revenue cap" in community and "USD 1,000,000" in community
    assert "Powered by Stability AI" in community
    assert "Add license" not in page.text  # a reviewer reads; only admins change
    assert 'href="/licenses/new"' in world.client("admin").get("/licenses/").text


def test_a_license_page_shows_its_terms_and_the_models_under_it(world):
    page = world.client("campaign_manager").get("/licenses/Apache-2.0")
    assert page.status_code == 200
    models = re.search(r'data-testid="license-models">(.*?)</table>', page.text, re.S).group(1)
    assert "tiny-sd" in models
    openrail = world.client("campaign_manager").get("/licenses/CreativeML-OpenRAIL-M").text
    assert openrail.count("<li>") >= 12 and "Not to exploit, harm or attempt to exploit or harm minors" in openrail
    assert "No registered model uses it." in openrail
    assert world.client("reviewer").get("/licenses/LicenseRef-Nothing").status_code == 404


def test_an_admin_adds_a_license_and_it_is_audited(world):
    text = b"The Acme model license, version 1."
    response = world.post("admin", "/licenses/", {**GOOD, "text_file": (io.BytesIO(text), "LICENSE.txt")},
                          content_type="multipart/form-data")
    assert response.status_code == 302 and response.headers["Location"] == "/licenses/LicenseRef-Acme-Model"
    with transaction(world.farm.session_factory) as session:
        added = session.scalars(select(License).where(License.identifier == "LicenseRef-Acme-Model")).one()
        assert (added.name, added.commercial_use, added.attribution_required, added.attribution_text) == (
            "Acme model license", "allowed", True, "Made with Acme models")
        assert added.use_restrictions == ["No weapons", "No deepfakes of real people"]  # blank lines dropped
        assert added.text_sha256 == hashlib.sha256(text).hexdigest() and added.derivatives_inherit
    event = events(world, "license.created")[-1]
    assert (event.entity_id, event.actor_name) == ("LicenseRef-Acme-Model", "admin-compliance")
    page = world.client("admin").get("/licenses/LicenseRef-Acme-Model").text
    assert "Added license LicenseRef-Acme-Model." in page and "Made with Acme models" in page


@pytest.mark.parametrize("changes, field, message", [
    ({"identifier": "my license"}, "identifier", "neither an SPDX identifier"),
    ({"identifier": "LicenseRef-"}, "identifier", "LicenseRef- followed by"),
    ({"identifier": "Apache-2.0"}, "identifier", "exists already"),
    ({"name": "  "}, "name", "is required"),
    ({"url": "ftp://example.com/x"}, "url", "is not an http(s) URL"),
    ({"text_sha256": "abc"}, "text_sha256", "64 hex digits"),
    ({"commercial_use": "sometimes"}, "commercial_use", "must be one of"),
    ({"commercial_use": "revenue_capped"}, "revenue_cap_usd", "is required for a revenue-capped license"),
    ({"revenue_cap_usd": "1000"}, "revenue_cap_usd", "only a revenue-capped license"),
    ({"commercial_use": "revenue_capped", "revenue_cap_usd": "-5"}, "revenue_cap_usd", "whole number"),
    ({"attribution_text": ""}, "attribution_text", "is required when attribution is required"),
    ({"use_restrictions": "fine\n\n" + "x" * 2001}, "use_restrictions", "line 3: must be at most 2000"),
])
def test_bad_input_is_named_at_its_field_with_the_values_kept(world, changes, field, message):
    before = licenses_count(world)
    form = {**GOOD, "identifier": "LicenseRef-Bad-Input", **changes}
    response = world.post("admin", "/licenses/", form)
    assert response.status_code == 400
    assert message in (field_error(response.text, field) or ""), response.text
    assert f'id="{field}"' in response.text and 'aria-invalid="true"' in response.text
    assert 'value="Acme model license"' in response.text or field == "name"
    assert form["use_restrictions"].splitlines()[-1].strip() in response.text  # the textarea keeps what was typed
    assert licenses_count(world) == before


def test_an_uploaded_empty_license_text_is_refused_at_its_field(world):
    response = world.post("admin", "/licenses/", {**GOOD, "identifier": "LicenseRef-Empty-Text",
                                                  "text_file": (io.BytesIO(b""), "empty.txt")},
                          content_type="multipart/form-data")
    assert response.status_code == 400 and field_error(response.text, "text_file") == "the file is empty"


def test_editing_terms_flags_the_assets_made_under_them_and_says_so(world):
    world.post("admin", "/licenses/", {**GOOD, "identifier": "LicenseRef-Edit-Me", "attribution_required": "",
                                       "attribution_text": "", "use_restrictions": ""})
    _, name = world.checkpoint(license_identifier="LicenseRef-Edit-Me")
    asset_id = world.render(world.submit(name))[0]
    form = world.client("admin").get("/licenses/LicenseRef-Edit-Me/edit").text
    assert 'name="identifier" value="LicenseRef-Edit-Me"' in form and "Reason for the change" in form

    response = world.post("admin", "/licenses/LicenseRef-Edit-Me/edit", {
        "name": "Acme model license", "url": GOOD["url"], "commercial_use": "forbidden", "revenue_cap_usd": "",
        "attribution_text": "", "use_restrictions": "Research only", "derivatives_inherit": "1",
        "reason": "legal read the small print"}, follow_redirects=True)
    assert response.status_code == 200
    assert "1 model(s) under it are re-checked by workers and 1 asset(s) they made are flagged for re-review" \
        in response.text
    event = events(world, "license.updated")[-1]
    assert event.before["commercial_use"] == "allowed" and event.after["commercial_use"] == "forbidden"
    assert event.after["reason"] == "legal read the small print" and event.after["flagged_assets"] == 1
    asset = world.asset(asset_id)
    assert asset.needs_rereview and "legal read the small print" in asset.rereview_reason

    # The flag shows on the asset page (with the reason) and as a badge in the gallery.
    page = world.client("reviewer").get(f"/assets/{asset_id}").text
    banner = re.search(r'data-testid="rereview-flag">(.*?)</p>', page, re.S).group(1)
    assert "Needs re-review" in banner and "legal read the small print" in html.unescape(banner)
    chain = re.search(r'data-testid="license-chain">(.*?)</ul>', page, re.S).group(1)
    assert name in chain and "LicenseRef-Edit-Me" in chain
    gallery = world.client("reviewer").get(f"/gallery/?campaign_id={world.noncommercial_id}").text
    assert 'data-testid="needs-rereview"' in gallery

    # Saving the same values again changes nothing and writes nothing.
    count = len(events(world, "license.updated"))
    again = world.post("admin", "/licenses/LicenseRef-Edit-Me/edit", {
        "name": "Acme model license", "url": GOOD["url"], "commercial_use": "forbidden", "revenue_cap_usd": "",
        "attribution_text": "", "use_restrictions": "Research only", "derivatives_inherit": "1"},
        follow_redirects=True)
    assert "Nothing changed in LicenseRef-Edit-Me." in again.text and len(events(world, "license.updated")) == count


def test_a_bad_edit_is_named_at_its_field_and_changes_nothing(world):
    response = world.post("admin", "/licenses/Apache-2.0/edit", {
        "name": "Apache License 2.0", "commercial_use": "allowed", "revenue_cap_usd": "5000", "derivatives_inherit": ""})
    assert response.status_code == 400
    assert "only a revenue-capped license" in field_error(response.text, "revenue_cap_usd")
    assert 'value="5000"' in response.text
    with transaction(world.farm.session_factory) as session:
        apache = session.scalars(select(License).where(License.identifier == "Apache-2.0")).one()
        assert apache.revenue_cap_usd is None and apache.updated_at is None
    assert world.post("admin", "/licenses/LicenseRef-Nothing/edit", {"name": "x"}).status_code == 404


@pytest.mark.parametrize("role", ["campaign_manager", "reviewer", "auditor", "ops"])
def test_only_admins_add_or_edit_licenses(world, role):
    before = licenses_count(world)
    assert world.client(role).get("/licenses/new").status_code == 403
    assert world.client(role).get("/licenses/Apache-2.0/edit").status_code == 403
    assert world.post(role, "/licenses/", {**GOOD, "identifier": f"LicenseRef-By-{role}"}).status_code == 403
    assert world.post(role, "/licenses/Apache-2.0/edit", {"name": "Mine"}).status_code == 403
    assert licenses_count(world) == before


def test_a_stale_form_changes_nothing(world):
    before = licenses_count(world)
    client = world.client("admin")
    response = client.post("/licenses/", data={**GOOD, "identifier": "LicenseRef-Stale"})
    assert response.status_code == 400 and "This form is stale" in response.text
    response = client.post("/licenses/", data={**GOOD, "identifier": "LicenseRef-Stale", "csrf_token": "forged"})
    assert response.status_code == 400
    assert licenses_count(world) == before
    assert client.post("/licenses/Apache-2.0/edit", data={"name": "Stale"}).status_code == 400
