"""Browsing the audit log (farm.audit.browse): filters, keyset pages, actions by index, one event,
the verification summary; and the model pages' lookups (farm.models.lookup)."""

from datetime import date, datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import select, update

from farm.audit.browse import (EventFilters, get_event, known_actions, list_events, parse_anchors, verify_log)
from farm.accounts.service import create_user
from farm.audit.log import record_event
from farm.db.models import AuditEvent, RegisteredModel
from farm.db.session import transaction
from farm.errors import InvalidInput, NotFound
from farm.models.lookup import form_path, model_name_by_id, unregistered_model_files
from tests.unit.compliance_world import weights


@pytest.fixture
def log(embedded_farm):
    """The seeded log plus 30 events: model.suspended x10 by ana, campaign.updated x20 by bo."""
    with transaction(embedded_farm.session_factory) as session:
        ana = create_user(session, name="ana", role="admin")
        bo = create_user(session, name="bo", role="campaign_manager")
        for index in range(30):
            if index % 3 == 0:
                record_event(session, action="model.suspended", entity_type="model", entity_id=index, actor=ana,
                             after={"index": index})
            else:
                record_event(session, action="campaign.updated", entity_type="campaign", entity_id=index % 2,
                             actor=bo, after={"index": index})
    return embedded_farm


def _all_pages(session, filters, limit):
    ids, before, pages = [], None, 0
    while True:
        page = list_events(session, filters, before=before, limit=limit)
        pages += 1
        ids += [event.id for event in page.events]
        if page.next_before is None:
            return ids, pages
        before = page.next_before


def test_pages_walk_the_log_newest_first_without_gaps_or_repeats(log):
    with transaction(log.session_factory) as session:
        total = session.query(AuditEvent).count()
        ids, pages = _all_pages(session, EventFilters(), 7)
    assert ids == sorted(ids, reverse=True) and len(ids) == len(set(ids)) == total
    assert pages == -(-total // 7)


def test_filters_by_action_prefix_entity_and_actor(log):
    with transaction(log.session_factory) as session:
        exact = list_events(session, EventFilters(action="campaign.updated"), limit=100).events
        prefix = list_events(session, EventFilters(action="model.*"), limit=100).events
        entity = list_events(session, EventFilters(entity_type="campaign", entity_id="1"), limit=100).events
        actor = list_events(session, EventFilters(actor="ANA"), limit=100).events
        none = list_events(session, EventFilters(action="model_*"), limit=100).events
    assert len(exact) == 20 and {e.action for e in exact} == {"campaign.updated"}
    # model.registered (tiny-sd, the upscaler) and model.suspended; never another prefix.
    assert {e.action for e in prefix} == {"model.registered", "model.suspended"}
    assert all(e.entity_type == "campaign" and e.entity_id == "1" for e in entity) and len(entity) == 10
    assert len(actor) == 10 and {e.actor_name for e in actor} == {"ana"}
    assert none == []  # '_' is not a wildcard


def test_date_range_keeps_the_days_given_both_included(log):
    today = datetime.now(timezone.utc).date()
    with transaction(log.session_factory) as session:  # (this breaks the chain; only the dates matter here)
        session.execute(update(AuditEvent).where(AuditEvent.actor_name == "ana")
                        .values(occurred_at=datetime(2020, 5, 4, 23, 59, tzinfo=timezone.utc)))
        in_may = list_events(session, EventFilters.from_values({"from": "2020-05-04", "to": "2020-05-04"})).events
        since_today = list_events(session, EventFilters(since=today), limit=500).events
        before_may = list_events(session, EventFilters(until=date(2020, 5, 3))).events
    assert len(in_may) == 10 and {e.actor_name for e in in_may} == {"ana"}
    assert "ana" not in {e.actor_name for e in since_today} and len(since_today) > 20
    assert before_may == []


@pytest.mark.parametrize("values, field", [
    ({"from": "yesterday"}, "from"), ({"to": "2024-13-01"}, "to"), ({"from": "2024-02-02", "to": "2024-02-01"}, "to"),
    ({"action": "x" * 201}, "action"), ({"actor": "a\nb"}, "actor"), ({"entity_type": ["model"]}, "entity_type"),
])
def test_bad_filters_name_their_field(values, field):
    with pytest.raises(InvalidInput) as caught:
        EventFilters.from_values(values)
    assert caught.value.field == field


@pytest.mark.parametrize("before, limit, field", [("abc", 10, "before"), (0, 10, "before"), (None, 0, "limit"),
                                                  (None, 501, "limit"), (None, True, "limit")])
def test_bad_paging_names_its_field(log, before, limit, field):
    with transaction(log.session_factory) as session, pytest.raises(InvalidInput) as caught:
        list_events(session, before=before, limit=limit)
    assert caught.value.field == field


def test_filters_round_trip_through_their_query_values():
    filters = EventFilters.from_values({"from": "2024-01-01", "to": "", "action": " model.* ", "actor": "ana"})
    assert filters.active() == {"from": "2024-01-01", "action": "model.*", "actor": "ana"}
    assert EventFilters.from_values(filters.active()) == filters


def test_known_actions_are_every_distinct_action_sorted(log):
    with transaction(log.session_factory) as session:
        actions = known_actions(session)
        expected = sorted({a for (a,) in session.query(AuditEvent.action).distinct()})
    assert actions == expected and "model.suspended" in actions and "campaign.updated" in actions


def test_one_event_and_a_missing_one(log):
    with transaction(log.session_factory) as session:
        newest = list_events(session, limit=1).events[0]
        assert get_event(session, newest.id) == newest
        with pytest.raises(NotFound):
            get_event(session, newest.id + 1000)


def test_verification_summary_names_the_first_bad_event(log):
    with transaction(log.session_factory) as session:
        good = verify_log(session)
        middle = list_events(session, EventFilters(actor="bo"), limit=5).events[-1].id
    assert good.ok and good.first_problem is None and good.head.startswith(f"{good.head_event_id}:")
    with transaction(log.session_factory) as session:
        session.execute(update(AuditEvent).where(AuditEvent.id == middle).values(entity_id="edited"))
    with transaction(log.session_factory) as session:
        bad = verify_log(session, parse_anchors(good.head))
    assert not bad.ok and bad.first_problem.event_id == middle and "edited" in bad.first_problem.problem
    assert bad.to_dict()["first_bad_event"]["event_id"] == middle and bad.anchors == [good.head]


def test_anchors_parse_from_text_and_lists():
    assert parse_anchors(" 1:aa, 2:bb\n3:cc ") == ["1:aa", "2:bb", "3:cc"]
    assert parse_anchors(["1:aa 2:bb"]) == ["1:aa", "2:bb"] and parse_anchors("") == []
    with pytest.raises(InvalidInput):
        parse_anchors(5)


# -- farm.models.lookup -----------------------------------------------------------------------------

def test_model_name_by_id(embedded_farm):
    with transaction(embedded_farm.session_factory) as session:
        model_id = session.scalar(select(RegisteredModel.id).where(RegisteredModel.name == "tiny-sd"))
        assert model_name_by_id(session, model_id) == "tiny-sd"
        with pytest.raises(NotFound):
            model_name_by_id(session, model_id + 999)


def test_form_paths_are_under_the_model_folder_unless_absolute(embedded_settings):
    models = embedded_settings.models_dir
    assert form_path(embedded_settings, " loras/a.safetensors ") == models / "loras" / "a.safetensors"
    assert form_path(embedded_settings, "/srv/x.safetensors") == Path("/srv/x.safetensors")
    for bad in ("", "   ", None, 3, "a\x00b"):
        with pytest.raises(InvalidInput) as caught:
            form_path(embedded_settings, bad)
        assert caught.value.field == "path"


def test_unregistered_model_files_are_offered_and_registered_ones_are_not(embedded_farm):
    models = embedded_farm.settings.models_dir
    weights(models / "loras" / "new.safetensors", 1)
    (models / "loras" / "notes.txt").write_text("not weights")
    weights(models / ".cache" / "hidden.safetensors", 2)
    weights(models / "a" / "b" / "c" / "d" / "too-deep.safetensors", 3)
    (models / "ckpt.ckpt").write_bytes(b"pickle")
    with transaction(embedded_farm.session_factory) as session:
        found = unregistered_model_files(session, embedded_farm.settings)
    paths = [c.path for c in found]
    assert paths == ["loras/new.safetensors"], paths  # tiny-sd (a registered diffusers folder) is not offered
    assert found[0].kind == "file" and found[0].size_bytes > 0
