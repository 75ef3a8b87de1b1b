"""Campaign services on the embedded farm: create, update, archive, members, visibility, audit."""

from datetime import date

import pytest
from sqlalchemy import func, select, update

from farm.accounts.service import create_user
from farm.audit.log import verify_chain
from farm.campaigns.service import (
    add_member, archive_campaign, create_campaign, create_campaign_as, get_campaign_info, list_campaigns,
    list_members, remove_member, require_open_campaign, unarchive_campaign, update_campaign,
)
from farm.db.models import AuditEvent, Campaign, Job, RegisteredModel
from farm.db.session import transaction
from farm.errors import InvalidInput, NotFound
from farm.jobs.service import JobRequest, submit_job
from farm.templates.service import create_template


@pytest.fixture
def people(embedded_farm):
    with transaction(embedded_farm.session_factory) as session:
        return {role: create_user(session, name=f"{role}-user", role=role)
                for role in ("admin", "campaign_manager", "reviewer", "ops", "auditor")} | {
            "other_manager": create_user(session, name="other-manager", role="campaign_manager")}


def _events(session, action):
    return session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)).all()


def test_create_with_every_field(embedded_farm, people):
    manager = people["campaign_manager"]
    with transaction(embedded_farm.session_factory) as session:
        info = create_campaign_as(session, manager, name=" Spring ", brand="Acme", commercial_use=False,
                                  due_date="2026-12-24", default_model="tiny-sd", style_suffix="studio light",
                                  style_negative="blurry", channel_formats=["instagram_story", "linkedin"])
        assert (info.name, info.owner_id, info.status, info.due_date) == ("Spring", manager.id, "active", date(2026, 12, 24))
        assert info.default_model == "tiny-sd" and info.channel_formats == ["instagram_story", "linkedin"]
        as_json = info.to_dict()
        assert as_json["due_date"] == "2026-12-24" and as_json["updated_at"] is None
        created = _events(session, "campaign.created")[-1]
        assert created.actor_name == manager.name and created.after["channel_formats"] == ["instagram_story", "linkedin"]


@pytest.mark.parametrize("fields, field", [
    ({"name": "  "}, "name"),
    ({"name": "x" * 201}, "name"),
    ({"brand": ""}, "brand"),
    ({"commercial_use": "yes"}, "commercial_use"),
    ({"due_date": "24/12/2026"}, "due_date"),
    ({"default_model": "nope"}, "default_model"),
    ({"default_model": "lanczos"}, "default_model"),  # an upscaler, not a checkpoint
    ({"style_suffix": 3}, "style_suffix"),
    ({"style_negative": "x" * 2001}, "style_negative"),
    ({"channel_formats": ["tiktok_vertical"]}, "channel_formats"),
    ({"channel_formats": "linkedin"}, "channel_formats"),
    ({"owner_id": 3}, "owner_id"),
])
def test_bad_campaign_fields_are_named_and_nothing_is_written(embedded_farm, people, fields, field):
    factory = embedded_farm.session_factory
    with pytest.raises(InvalidInput) as caught:
        with transaction(factory) as session:
            create_campaign_as(session, people["admin"], **{"name": "Spring", "brand": "Acme", **fields})
    assert caught.value.field == field
    with transaction(factory) as session:
        assert session.scalar(select(func.count(Campaign.id))) == 0


def test_update_changes_audits_and_stamps_only_what_changed(embedded_farm, people):
    manager = people["campaign_manager"]
    factory = embedded_farm.session_factory
    with transaction(factory) as session:
        campaign_id = create_campaign_as(session, manager, name="Spring", brand="Acme").id
    with transaction(factory) as session:
        info = update_campaign(session, manager, campaign_id, {
            "brand": "Acme Co", "commercial_use": False, "due_date": date(2027, 1, 31), "default_model": "tiny-sd",
            "style_suffix": "film grain", "style_negative": "text", "channel_formats": ["display_mrec"],
            "name": "Spring 2027",
        })
        assert (info.brand, info.commercial_use, info.due_date) == ("Acme Co", False, date(2027, 1, 31))
        assert (info.default_model, info.style_suffix, info.style_negative) == ("tiny-sd", "film grain", "text")
        assert info.channel_formats == ["display_mrec"] and info.name == "Spring 2027"
        assert info.updated_at is not None
        event = _events(session, "campaign.updated")[-1]
        assert event.actor_id == manager.id
        assert event.before == {"name": "Spring", "brand": "Acme", "commercial_use": True, "due_date": None,
                                "default_model": None, "style_suffix": "", "style_negative": "",
                                "channel_formats": []}
        assert event.after["default_model"] == "tiny-sd" and event.after["due_date"] == "2027-01-31"
        stamped = info.updated_at
    with transaction(factory) as session:
        # Same values again: nothing is written, nothing audited.
        again = update_campaign(session, manager, campaign_id, {"brand": "Acme Co", "default_model": "tiny-sd"})
        assert again.updated_at == stamped
        assert len(_events(session, "campaign.updated")) == 1
        only_brand = update_campaign(session, manager, campaign_id, {"brand": "Acme Inc", "default_model": None})
        assert only_brand.default_model is None
        event = _events(session, "campaign.updated")[-1]
        assert event.before == {"brand": "Acme Co", "default_model": "tiny-sd"}
        assert event.after == {"brand": "Acme Inc", "default_model": None}
        assert verify_chain(session) == []


@pytest.mark.parametrize("changes, field", [
    ({"status": "archived"}, "status"),
    ({"owner_id": 1}, "owner_id"),
    ({"name": "Autumn"}, "name"),  # taken by another campaign
    ({"default_model": "lanczos"}, "default_model"),
    ({"channel_formats": ["instagram_square", "instagram_square"]}, "channel_formats"),
    ({"due_date": 20261224}, "due_date"),
])
def test_bad_updates_are_named_and_change_nothing(embedded_farm, people, changes, field):
    admin = people["admin"]
    factory = embedded_farm.session_factory
    with transaction(factory) as session:
        campaign_id = create_campaign_as(session, admin, name="Spring", brand="Acme").id
        create_campaign_as(session, admin, name="Autumn", brand="Acme")
    with pytest.raises(InvalidInput) as caught:
        with transaction(factory) as session:
            update_campaign(session, admin, campaign_id, changes)
    assert caught.value.field == field
    with transaction(factory) as session:
        assert get_campaign_info(session, admin, campaign_id).updated_at is None


def test_a_suspended_model_cannot_become_the_default(embedded_farm, people):
    with transaction(embedded_farm.session_factory) as session:
        session.execute(update(RegisteredModel).where(RegisteredModel.name == "tiny-sd")
                        .values(status="suspended", status_reason="license under review"))
        with pytest.raises(InvalidInput) as caught:
            create_campaign_as(session, people["admin"], name="S", brand="B", default_model="tiny-sd")
    assert caught.value.field == "default_model" and "license under review" in caught.value.message


def test_visibility_members_and_listing(embedded_farm, people):
    manager, other, reviewer = people["campaign_manager"], people["other_manager"], people["reviewer"]
    factory = embedded_farm.session_factory
    with transaction(factory) as session:
        mine = create_campaign_as(session, manager, name="Mine", brand="Acme").id
        theirs = create_campaign_as(session, other, name="Theirs", brand="Acme").id
    with transaction(factory) as session:
        assert [c.name for c in list_campaigns(session, manager)] == ["Mine"]
        assert [c.name for c in list_campaigns(session, reviewer)] == []
        for role in ("admin", "ops", "auditor"):
            assert [c.name for c in list_campaigns(session, people[role])] == ["Mine", "Theirs"]
        for action in (lambda: get_campaign_info(session, manager, theirs),
                       lambda: update_campaign(session, manager, theirs, {"brand": "x"}),
                       lambda: archive_campaign(session, manager, theirs),
                       lambda: add_member(session, manager, theirs, reviewer.id),
                       lambda: list_members(session, manager, theirs),
                       lambda: get_campaign_info(session, manager, 99999)):
            with pytest.raises(NotFound) as caught:
                action()
            assert caught.value.what == "campaign"
    with transaction(factory) as session:
        assert add_member(session, manager, mine, reviewer.id) is True
        assert add_member(session, manager, mine, reviewer.id) is False  # already a member: no change
        assert [m.name for m in list_members(session, manager, mine)] == [reviewer.name]
        assert [c.name for c in list_campaigns(session, reviewer)] == ["Mine"]
        assert get_campaign_info(session, reviewer, mine).name == "Mine"
        assert [e.after["user_id"] for e in _events(session, "campaign.member_added")] == [reviewer.id]
    with transaction(factory) as session:
        assert remove_member(session, manager, mine, reviewer.id) is True
        assert remove_member(session, manager, mine, reviewer.id) is False
        assert list_campaigns(session, reviewer) == []
        assert _events(session, "campaign.member_removed")[-1].before == {"user_id": reviewer.id,
                                                                          "user": reviewer.name}
        with pytest.raises(NotFound):
            add_member(session, manager, mine, 99999)
        with pytest.raises(InvalidInput) as caught:
            add_member(session, manager, mine, "reviewer-user")
        assert caught.value.field == "user_id"


def _submit(session, campaign_id, version_id):
    return submit_job(session, JobRequest(campaign_id=campaign_id, template_version_id=version_id,
                                          model_name="tiny-sd", variable_rows=[{"product": "shoe"}], seeds=[1],
                                          params={"steps": 1, "width": 64, "height": 64}))


def test_archived_campaigns_are_hidden_by_default_and_take_no_new_jobs(embedded_farm, people):
    manager = people["campaign_manager"]
    factory = embedded_farm.session_factory
    with transaction(factory) as session:
        campaign_id = create_campaign_as(session, manager, name="Spring", brand="Acme").id
        version_id = create_template(session, name="t", body="{{ product }}", campaign_id=campaign_id).id
    with transaction(factory) as session:
        archived = archive_campaign(session, manager, campaign_id)
        assert archived.status == "archived" and archived.updated_at is not None
        assert list_campaigns(session, manager) == []
        assert [c.status for c in list_campaigns(session, manager, include_archived=True)] == ["archived"]
        event = _events(session, "campaign.archived")[-1]
        assert (event.before, event.after) == ({"status": "active"}, {"status": "archived"})
    for attempt in (lambda s: require_open_campaign(s, manager, campaign_id),
                    lambda s: _submit(s, campaign_id, version_id)):
        with pytest.raises(InvalidInput) as caught:
            with transaction(factory) as session:
                attempt(session)
        assert caught.value.field == "campaign" and "archived" in caught.value.message
    with transaction(factory) as session:
        assert session.scalar(select(func.count(Job.id))) == 0
        assert unarchive_campaign(session, manager, campaign_id).status == "active"
        assert len(_events(session, "campaign.unarchived")) == 1
        assert unarchive_campaign(session, manager, campaign_id).status == "active"  # no second event
        assert len(_events(session, "campaign.unarchived")) == 1
        _submit(session, campaign_id, version_id)
        assert session.scalar(select(func.count(Job.id))) == 1


def test_the_legacy_create_campaign_keeps_working(embedded_farm):
    with transaction(embedded_farm.session_factory) as session:
        campaign = create_campaign(session, name="C", brand="B")
        assert campaign.channel_formats == [] and campaign.status == "active"
        with pytest.raises(InvalidInput) as caught:
            create_campaign(session, name="C", brand="B")
        assert caught.value.field == "name"
