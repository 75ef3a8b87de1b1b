"""Campaign pages through the Flask test client: list, create, view, edit, archive, members; bad
input shown at its field with the typed values kept (400, nothing written); CSRF; visibility."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import select

from farm.accounts.service import set_disabled
from farm.campaigns.service import archive_campaign
from farm.db.models import AuditEvent, Campaign, CampaignMember
from farm.db.session import transaction
from farm.jobs.batch import BatchRequest, submit_batch
from tests.dashboard.campaign_helpers import (
    Forms, count, field_error, input_value, make_campaign, make_template, unique,
)
from tests.dashboard.campaign_helpers import client, farm, shared_app  # noqa: F401 (fixtures)
from tests.dashboard.conftest import add_user, login_as


def _campaign(farm, campaign_id: int) -> Campaign:
    with transaction(farm.session_factory) as session:
        return session.get(Campaign, campaign_id)


# -- the list -------------------------------------------------------------------------------------------

def test_list_shows_visible_campaigns_with_due_dates_and_counts(client, farm):
    manager = login_as(client, "campaign_manager")
    other = add_user(farm, "campaign_manager")
    mine = make_campaign(farm, manager, due_date=date.today() - timedelta(days=1))
    soon = make_campaign(farm, manager, due_date=date.today() + timedelta(days=3))
    theirs = make_campaign(farm, other)
    archived = make_campaign(farm, manager)
    with transaction(farm.session_factory) as session:
        archive_campaign(session, manager, archived.id)
    version = make_template(farm, manager, mine.id)
    submit_batch(farm, manager, BatchRequest(campaign_id=mine.id, template_version_id=version.id,
                                             rows=[{"product": "hat", "background": "sand"}], seeds=[1]))

    page = client.get("/campaigns/")
    assert page.status_code == 200
    assert mine.name in page.text and soon.name in page.text
    assert theirs.name not in page.text and archived.name not in page.text
    assert "overdue" in page.text and "due in 3 d" in page.text
    assert 'href="/campaigns/new"' in page.text
    row = page.text[page.text.index(mine.name):]
    assert '<td class="num">1</td>' in row[:2000]  # one job

    with_archived = client.get("/campaigns/?archived=1")
    assert archived.name in with_archived.text and theirs.name not in with_archived.text


def test_reviewer_sees_only_member_campaigns_and_no_new_button(client, farm):
    reviewer = login_as(client, "reviewer")
    owner = add_user(farm, "campaign_manager")
    member_of = make_campaign(farm, owner, members=[reviewer])
    not_member = make_campaign(farm, owner)
    page = client.get("/campaigns/")
    assert member_of.name in page.text and not_member.name not in page.text
    assert "New campaign" not in page.text


# -- create ---------------------------------------------------------------------------------------------

def test_new_campaign_form_has_labelled_fields(client):
    login_as(client, "campaign_manager")
    page = client.get("/campaigns/new")
    assert page.status_code == 200
    for field, label in [("name", "Name"), ("brand", "Brand"), ("due_date", "Due date"),
                         ("commercial_use", "Commercial use"), ("default_model", "Default model"),
                         ("style_suffix", "Style suffix"), ("style_negative", "Style negative prompt"),
                         ("format-instagram_square", "Instagram square post")]:
        assert f'<label for="{field}">{label}' in page.text, field
    assert "1080×1920" in page.text  # channel formats show their sizes
    assert '<option value="tiny-sd"' in page.text  # active checkpoints to choose from
    assert "Create campaign" in page.text


def test_create_campaign_with_every_field(client, farm):
    manager = login_as(client, "campaign_manager")
    forms = Forms(client)
    name = unique("Spring")
    response = forms.post("/campaigns/", [
        ("name", name), ("brand", "Acme"), ("due_date", "2030-04-01"), ("commercial_use", "1"),
        ("default_model", "tiny-sd"), ("style_suffix", "studio light"), ("style_negative", "blurry"),
        ("channel_formats", "instagram_story"), ("channel_formats", "display_mrec"),
    ])
    assert response.status_code == 302
    campaign_id = int(response.headers["Location"].rsplit("/", 1)[1])
    campaign = _campaign(farm, campaign_id)
    assert (campaign.name, campaign.brand, campaign.owner_id, campaign.commercial_use) == (name, "Acme", manager.id, True)
    assert campaign.due_date == date(2030, 4, 1) and campaign.style_suffix == "studio light"
    assert campaign.channel_formats == ["instagram_story", "display_mrec"]

    page = client.get(response.headers["Location"])
    assert page.status_code == 200
    assert f"Created campaign {name}" in page.text
    for text in ("Instagram / Facebook story", "1080×1920", "Display medium rectangle (MREC)", "300×250",
                 "studio light", "blurry", "tiny-sd", "2030-04-01", manager.name):
        assert text in page.text, text


def test_unchecked_commercial_use_is_false(client, farm):
    login_as(client, "admin")
    response = Forms(client).post("/campaigns/", {"name": unique("Internal"), "brand": "Acme"})
    assert response.status_code == 302
    campaign = _campaign(farm, int(response.headers["Location"].rsplit("/", 1)[1]))
    assert campaign.commercial_use is False and campaign.channel_formats == [] and campaign.default_model_id is None


@pytest.mark.parametrize("changes, field, message", [
    ({"name": "  "}, "name", "is required"),
    ({"name": "x" * 201}, "name", "longer than 200"),
    ({"brand": ""}, "brand", "is required"),
    ({"due_date": "24/12/2026"}, "due_date", "YYYY-MM-DD"),
    ({"default_model": "no-such-model"}, "default_model", "unknown model"),
    ({"default_model": "lanczos"}, "default_model", "not a checkpoint"),
    ({"style_suffix": "x" * 2001}, "style_suffix", "longer than 2000"),
    ({"style_negative": "x" * 2001}, "style_negative", "longer than 2000"),
    ({"channel_formats": "tiktok_vertical"}, "channel_formats", "unknown channel format"),
])
def test_create_with_bad_input_shows_the_error_at_the_field(client, farm, changes, field, message):
    login_as(client, "campaign_manager")
    name = unique("Bad")
    form = {"name": name, "brand": "Acme", "style_suffix": "kept suffix", "commercial_use": "1", **changes}
    before = count(farm, Campaign)
    page = Forms(client).post("/campaigns/", form)
    assert page.status_code == 400
    assert message in field_error(page.text, field)
    assert f'aria-describedby="error-{field}"' in page.text or field == "channel_formats"
    assert count(farm, Campaign) == before
    if field != "name":
        assert input_value(page.text, "name") == name  # the typed values are kept
    if field not in ("style_suffix",):
        assert "kept suffix" in page.text
    assert 'id="commercial_use" name="commercial_use" value="1" checked' in page.text


def test_create_with_a_taken_name(client, farm):
    manager = login_as(client, "campaign_manager")
    existing = make_campaign(farm, manager)
    page = Forms(client).post("/campaigns/", {"name": existing.name, "brand": "Other"})
    assert page.status_code == 400
    assert "exists already" in field_error(page.text, "name")


def test_create_without_csrf_token_is_refused_and_writes_nothing(client, farm):
    login_as(client, "campaign_manager")
    before = count(farm, Campaign)
    response = client.post("/campaigns/", data={"name": unique("Forged"), "brand": "Acme"})
    assert response.status_code == 400
    assert "stale" in response.text
    assert count(farm, Campaign) == before


def test_reviewer_may_not_create(client):
    login_as(client, "reviewer")
    assert client.get("/campaigns/new").status_code == 403
    assert Forms(client).post("/campaigns/", {"name": unique("No"), "brand": "Acme"}).status_code == 403


# -- view ------------------------------------------------------------------------------------------------

def test_campaign_page_shows_templates_jobs_members_and_links(client, farm):
    manager = login_as(client, "campaign_manager")
    reviewer = add_user(farm, "reviewer")
    campaign = make_campaign(farm, manager, members=[reviewer], style_suffix="warm light",
                             channel_formats=["linkedin"])
    version = make_template(farm, manager, campaign.id, name="hero shot")
    job = submit_batch(farm, manager, BatchRequest(campaign_id=campaign.id, template_version_id=version.id,
                                                   rows=[{"product": "hat", "background": "sand"}], seeds=[1, 2],
                                                   name="first round"))
    page = client.get(f"/campaigns/{campaign.id}")
    assert page.status_code == 200
    text = page.text
    assert "hero shot" in text and f'href="/templates/{version.template_id}"' in text
    assert "first round" in text and "0/2 done" in text
    if "jobs.view" in client.application.view_functions:
        assert f'href="/jobs/{job.job_id}"' in text
    assert reviewer.name in text and "LinkedIn shared image" in text and "1200×627" in text
    assert "warm light" in text
    assert f'href="/campaigns/{campaign.id}/batches/new"' in text
    assert f'href="/campaigns/{campaign.id}/templates/new"' in text
    assert f'href="/campaigns/{campaign.id}/edit"' in text
    if "gallery.index" in client.application.view_functions:
        assert f"/gallery/?campaign_id={campaign.id}" in text


def test_viewers_without_edit_rights_get_no_edit_controls(client, farm):
    auditor = login_as(client, "auditor")
    owner = add_user(farm, "campaign_manager")
    campaign = make_campaign(farm, owner)
    page = client.get(f"/campaigns/{campaign.id}")
    assert page.status_code == 200, auditor
    assert "Edit campaign" not in page.text and "Add member" not in page.text and "Archive" not in page.text
    assert "New batch" not in page.text


def test_a_campaign_the_user_cannot_see_is_not_found(client, farm):
    login_as(client, "campaign_manager")
    owner = add_user(farm, "campaign_manager")
    hidden = make_campaign(farm, owner)
    forms = Forms(client)
    assert client.get(f"/campaigns/{hidden.id}").status_code == 404
    assert client.get(f"/campaigns/{hidden.id}/edit").status_code == 404
    assert forms.post(f"/campaigns/{hidden.id}/edit", {"name": "x", "brand": "y"}).status_code == 404
    assert forms.post(f"/campaigns/{hidden.id}/archive").status_code == 404
    assert forms.post(f"/campaigns/{hidden.id}/members", {"user_id": str(owner.id)}).status_code == 404
    assert forms.post(f"/campaigns/{hidden.id}/members/{owner.id}/remove").status_code == 404
    assert client.get("/campaigns/999999").status_code == 404
    assert _campaign(farm, hidden.id).status == "active"


# -- edit ------------------------------------------------------------------------------------------------

def test_edit_form_is_prefilled_and_saves(client, farm):
    manager = login_as(client, "campaign_manager")
    campaign = make_campaign(farm, manager, due_date="2030-01-02", style_suffix="old style",
                             channel_formats=["linkedin"], default_model="tiny-sd")
    page = client.get(f"/campaigns/{campaign.id}/edit")
    assert page.status_code == 200
    assert input_value(page.text, "name") == campaign.name and input_value(page.text, "due_date") == "2030-01-02"
    assert 'value="linkedin" checked' in page.text and 'value="tiny-sd" selected' in page.text
    assert "old style" in page.text

    new_name = unique("Renamed")
    response = Forms(client).post(f"/campaigns/{campaign.id}/edit", [
        ("name", new_name), ("brand", "Acme 2"), ("due_date", ""), ("default_model", ""),
        ("style_suffix", "new style"), ("style_negative", "grainy"), ("channel_formats", "youtube_thumbnail"),
    ])
    assert response.status_code == 302 and response.headers["Location"] == f"/campaigns/{campaign.id}"
    saved = _campaign(farm, campaign.id)
    assert (saved.name, saved.brand, saved.due_date, saved.default_model_id) == (new_name, "Acme 2", None, None)
    assert saved.commercial_use is False and saved.channel_formats == ["youtube_thumbnail"]
    assert (saved.style_suffix, saved.style_negative) == ("new style", "grainy")
    with transaction(farm.session_factory) as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "campaign.updated",
                                                         AuditEvent.entity_id == str(campaign.id))).one()
        assert event.after["name"] == new_name and event.actor_name == manager.name


@pytest.mark.parametrize("changes, field", [
    ({"name": ""}, "name"), ({"brand": " "}, "brand"), ({"due_date": "2030-13-01"}, "due_date"),
    ({"default_model": "nope"}, "default_model"), ({"channel_formats": "nope"}, "channel_formats"),
    ({"style_negative": "n" * 2001}, "style_negative"),
])
def test_edit_with_bad_input_keeps_values_and_changes_nothing(client, farm, changes, field):
    manager = login_as(client, "campaign_manager")
    campaign = make_campaign(farm, manager, style_suffix="before")
    form = {"name": campaign.name, "brand": "Changed brand", "style_suffix": "typed suffix", **changes}
    page = Forms(client).post(f"/campaigns/{campaign.id}/edit", form)
    assert page.status_code == 400
    assert field_error(page.text, field)
    assert "typed suffix" in page.text
    saved = _campaign(farm, campaign.id)
    assert (saved.brand, saved.style_suffix) == ("Acme", "before")


# -- archive -----------------------------------------------------------------------------------------------

def test_archive_and_unarchive(client, farm):
    manager = login_as(client, "campaign_manager")
    campaign = make_campaign(farm, manager)
    forms = Forms(client)
    response = forms.post(f"/campaigns/{campaign.id}/archive")
    assert response.status_code == 302
    assert _campaign(farm, campaign.id).status == "archived"
    page = client.get(f"/campaigns/{campaign.id}")
    assert "is archived" in page.text and "Unarchive" in page.text and "New batch" not in page.text
    assert campaign.name not in client.get("/campaigns/").text

    assert forms.post(f"/campaigns/{campaign.id}/unarchive").status_code == 302
    assert _campaign(farm, campaign.id).status == "active"
    assert campaign.name in client.get("/campaigns/").text


# -- members -----------------------------------------------------------------------------------------------

def _members(farm, campaign_id):
    with transaction(farm.session_factory) as session:
        return set(session.scalars(select(CampaignMember.user_id).where(CampaignMember.campaign_id == campaign_id)))


def test_add_and_remove_a_member(client, farm):
    manager = login_as(client, "campaign_manager")
    reviewer = add_user(farm, "reviewer")
    campaign = make_campaign(farm, manager)
    page = client.get(f"/campaigns/{campaign.id}")
    assert f'<option value="{reviewer.id}"' in page.text  # offered
    forms = Forms(client)
    response = forms.post(f"/campaigns/{campaign.id}/members", {"user_id": str(reviewer.id)})
    assert response.status_code == 302
    assert _members(farm, campaign.id) == {reviewer.id}
    page = client.get(f"/campaigns/{campaign.id}")
    assert f"{reviewer.name} is a member now" in page.text
    assert f'<option value="{reviewer.id}"' not in page.text  # no longer offered

    # The member sees the campaign now.
    other = client.application.test_client()
    from tests.dashboard.conftest import sign_in
    assert sign_in(other, reviewer.name).status_code == 302
    assert other.get(f"/campaigns/{campaign.id}").status_code == 200

    assert forms.post(f"/campaigns/{campaign.id}/members/{reviewer.id}/remove").status_code == 302
    assert _members(farm, campaign.id) == set()
    assert other.get(f"/campaigns/{campaign.id}").status_code == 404


@pytest.mark.parametrize("value, message", [
    ("", "choose a user"), ("abc", "must be a user id"), ("999999", "there is no user"), ("disabled", "is disabled"),
])
def test_add_member_bad_input(client, farm, value, message):
    manager = login_as(client, "campaign_manager")
    campaign = make_campaign(farm, manager)
    if value == "disabled":
        gone = add_user(farm, "reviewer")
        with transaction(farm.session_factory) as session:
            set_disabled(session, session.merge(gone), True)
        value = str(gone.id)
    page = Forms(client).post(f"/campaigns/{campaign.id}/members", {"user_id": value})
    assert page.status_code == 400
    assert message in field_error(page.text, "user_id")
    assert _members(farm, campaign.id) == set()
