from sqlalchemy import update

from farm.audit.log import GENESIS_HASH, record_event, verify_chain
from farm.db.models import AuditEvent
from farm.db.session import transaction


def test_events_chain_and_verify(embedded_farm):
    with transaction(embedded_farm.session_factory) as session:
        first = record_event(session, action="test.one", entity_type="test", entity_id=1, after={"a": 1})
        second = record_event(session, action="test.two", entity_type="test", entity_id=1, before={"a": 1}, after={"a": 2})
        assert second.prev_hash == first.hash
        assert verify_chain(session) == []
        # prepare_database audited the seeded licenses and the tiny model before these two
        assert session.query(AuditEvent).order_by(AuditEvent.id).first().prev_hash == GENESIS_HASH


def test_an_edited_event_is_detected(embedded_farm):
    with transaction(embedded_farm.session_factory) as session:
        event = record_event(session, action="test.one", entity_type="test", after={"amount": 1})
        event_id = event.id
    with transaction(embedded_farm.session_factory) as session:
        session.execute(update(AuditEvent).where(AuditEvent.id == event_id).values(after={"amount": 1000}))
    with transaction(embedded_farm.session_factory) as session:
        problems = verify_chain(session)
    assert [p.event_id for p in problems] == [event_id]


def test_a_deleted_event_is_detected(embedded_farm):
    with transaction(embedded_farm.session_factory) as session:
        ids = [record_event(session, action=f"test.{n}", entity_type="test").id for n in range(3)]
    with transaction(embedded_farm.session_factory) as session:
        session.query(AuditEvent).filter(AuditEvent.id == ids[1]).delete()
    with transaction(embedded_farm.session_factory) as session:
        problems = verify_chain(session)
    assert [p.event_id for p in problems] == [ids[2]]
