"""Auditor pages: the event log (filters, keyset pages), one event, verifying the chain (honest and
tampered), the reports (per model, per license, per campaign, refusals), the CSV and JSON export of
a date range, bad input at its field, and the roles that may not see any of it."""

from __future__ import annotations

import csv
import html
import io
import json
import re
from datetime import datetime, timezone

import pytest
from sqlalchemy import select, update

from farm.audit.log import record_event
from farm.db.models import AuditEvent, User
from farm.db.session import transaction
from farm.licenses.policy import PolicyRefused
from farm.review.service import decide
from tests.dashboard.compliance_world import NON_COMMERCIAL, world  # noqa: F401
from tests.dashboard.conftest import farm_of, login_as
from tests.dashboard.test_license_pages import field_error

TODAY = datetime.now(timezone.utc).date().isoformat()


def event_ids(page: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr data-event-id="(\d+)">', page)]


@pytest.fixture(scope="module")
def paging_events(world) -> list[int]:
    """60 events of an action of their own, oldest first."""
    with transaction(world.farm.session_factory) as session:
        actor = session.get(User, world.users["admin"].id)
        ids = [record_event(session, action="test.paging", entity_type="test", entity_id=i, actor=actor,
                            after={"i": i}).id for i in range(60)]
    return ids


def test_the_log_pages_newest_first_with_keyset_links(world, paging_events):
    client = world.client("auditor")
    first = client.get("/audit/?action=test.paging")
    assert first.status_code == 200
    assert event_ids(first.text) == paging_events[::-1][:50]
    older = re.search(r'href="([^"]+)" data-testid="older-page"', first.text).group(1)
    assert f"before={paging_events[10]}" in html.unescape(older) and "action=test.paging" in html.unescape(older)
    second = client.get(html.unescape(older))
    assert event_ids(second.text) == paging_events[::-1][50:]
    assert 'data-testid="older-page"' not in second.text and 'data-testid="newest-page"' in second.text


def test_filters_by_action_prefix_actor_entity_and_dates(world, paging_events):
    client = world.client("admin")
    page = client.get("/audit/?action=license.*").text
    assert event_ids(page) and "<code>license.created</code>" in page and "<code>test.paging</code>" not in page
    by_actor = client.get("/audit/?actor=admin-compliance&entity_type=test&entity_id=7").text
    assert event_ids(by_actor) == [paging_events[7]]
    assert event_ids(client.get(f"/audit/?action=test.paging&from={TODAY}&to={TODAY}").text)
    assert not event_ids(client.get("/audit/?action=test.paging&from=2001-01-01&to=2001-12-31").text)
    # The filter form keeps what was asked, with the known actions offered.
    assert 'value="admin-compliance"' in by_actor and '<option value="test.paging">' in by_actor


@pytest.mark.parametrize("query, field, message", [
    ("from=yesterday", "from", "is not a date"), ("to=2024-02-30", "to", "is not a date"),
    ("from=2024-03-02&to=2024-03-01", "to", "is before the first day"), ("actor=" + "a" * 201, "actor", "at most 200"),
])
def test_a_bad_filter_is_named_at_its_field(world, query, field, message):
    response = world.client("auditor").get(f"/audit/?{query}")
    assert response.status_code == 400
    assert message in field_error(response.text, field)


def test_one_event_shows_its_hashes_before_and_after(world, paging_events):
    page = world.client("auditor").get(f"/audit/events/{paging_events[3]}")
    assert page.status_code == 200
    with transaction(world.farm.session_factory) as session:
        event = session.get(AuditEvent, paging_events[3])
    assert f'data-testid="event-hash">{event.hash}</code>' in page.text and event.prev_hash in page.text
    after = re.search(r'<pre class="json" data-testid="after">(.*?)</pre>', page.text, re.S).group(1)
    assert json.loads(html.unescape(after)) == {"i": 3}
    assert world.client("auditor").get("/audit/events/999999").status_code == 404


def test_reports_count_models_and_licenses_and_list_refusals(world):
    _, community = world.checkpoint(license_identifier="LicenseRef-Stability-AI-Community")
    _, forbidden = world.checkpoint(license_identifier=NON_COMMERCIAL)
    assets = world.render(world.submit(community, seeds=(1, 2)))
    with transaction(world.farm.session_factory) as session:
        decide(session, world.users["reviewer"], assets[0], "approve")
    with pytest.raises(PolicyRefused):
        world.submit(forbidden, campaign_id=world.campaign_id)
    client = world.client("auditor")

    models = client.get(f"/audit/reports/models?from={TODAY}&to={TODAY}").text
    row = re.search(rf'<tr data-model="{community}">(.*?)</tr>', models, re.S).group(1)
    cells = re.findall(r'<td class="num">([^<]*)', row)
    assert cells[:2] == ["2", "1"]  # assets, approved
    assert "LicenseRef-Stability-AI-Community" in row

    licenses = client.get("/audit/reports/licenses").text
    row = re.search(r'<tr data-license="LicenseRef-Stability-AI-Community">(.*?)</tr>', licenses, re.S).group(1)
    assert community in row and re.findall(r'<td class="num">([^<]*)', row)[:2] == ["2", "1"]

    report = client.get(f"/audit/reports/campaign?campaign_id={world.noncommercial_id}").text
    section = re.search(r'data-testid="report">(.*?)</section>', report, re.S).group(1)
    assert "Research moodboard" in section and "“Powered by Stability AI”" in html.unescape(section)
    assert "Acceptable Use Policy" in html.unescape(section)

    refusals = client.get(f"/audit/reports/refusals?rule=commercial_use_forbidden&from={TODAY}").text
    first = re.search(r'<tr data-event-id="\d+">(.*?)</tr>', refusals, re.S).group(1)
    assert forbidden in first and NON_COMMERCIAL in first and "commercial_use_forbidden" in first
    assert "Commercial launch" in first and "campaign_manager-compliance" in first


@pytest.mark.parametrize("url, field, message", [
    ("/audit/reports/models?from=soon", "from", "is not a date"),
    ("/audit/reports/licenses?from=2024-05-02&to=2024-05-01", "to", "before the first day"),
    ("/audit/reports/campaign?campaign_id=abc", "campaign_id", "is not a campaign id"),
    ("/audit/reports/campaign?campaign_id=99999", "campaign_id", "no campaign 99999"),
    ("/audit/reports/refusals?rule=whim", "rule", "must be one of"),
])
def test_bad_report_input_is_named_at_its_field(world, url, field, message):
    response = world.client("auditor").get(url)
    assert response.status_code == 400
    assert message in field_error(response.text, field)


def test_the_export_downloads_csv_and_json_for_a_date_range(world, paging_events):
    client = world.client("auditor")
    response = client.get(f"/audit/export?from={TODAY}&to={TODAY}&format=csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == f'attachment; filename="audit-{TODAY}-to-{TODAY}.csv"'
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert {int(r["id"]) for r in rows} >= set(paging_events)
    paging = next(r for r in rows if int(r["id"]) == paging_events[5])
    assert json.loads(paging["after"]) == {"i": 5} and paging["action"] == "test.paging"

    response = client.get(f"/audit/export?from={TODAY}&to={TODAY}&format=json")
    assert response.mimetype == "application/json" and response.headers["Content-Disposition"].endswith('.json"')
    document = json.loads(response.data)
    assert document["from"] == TODAY and document["head"]["anchor"].startswith(f"{document['head']['event_id']}:")
    assert [e["id"] for e in document["events"]] == sorted(e["id"] for e in document["events"])
    assert not client.get("/audit/export?from=2001-01-01&to=2001-01-01&format=json").json["events"]


@pytest.mark.parametrize("query, field, message", [
    ("to=2024-01-01&format=csv", "from", "is required"),
    ("from=2024-01-01&format=csv", "to", "is required"),
    ("from=2024-01-02&to=2024-01-01&format=csv", "to", "before the first day"),
    ("from=2024-01-01&to=2024-01-02&format=xml", "format", "must be one of csv, json"),
])
def test_a_bad_export_is_named_at_its_field(world, query, field, message):
    response = world.client("auditor").get(f"/audit/export?{query}")
    assert response.status_code == 400 and response.mimetype == "text/html"
    match = re.search(rf'data-error-for="export-{field}">([^<]*)<', response.text)
    assert match and message in html.unescape(match.group(1))


@pytest.mark.parametrize("role", ["campaign_manager", "reviewer", "ops"])
def test_other_roles_see_no_audit_pages(world, role):
    client = world.client(role)
    for url in ("/audit/", "/audit/verify", "/audit/events/1", "/audit/reports/models", "/audit/reports/licenses",
                "/audit/reports/campaign", "/audit/reports/refusals", f"/audit/export?from={TODAY}&to={TODAY}"):
        response = client.get(url)
        assert response.status_code == 403, url
    assert 'href="/audit/"' not in client.get("/licenses/").text  # and the nav does not offer it


def test_the_nav_offers_audit_models_licenses_and_exports_by_role(world):
    auditor = world.client("auditor").get("/licenses/").text
    nav = re.search(r'<nav class="mainnav"[^>]*>(.*?)</nav>', auditor, re.S).group(1)
    for href in ('href="/audit/"', 'href="/models/"', 'href="/licenses/"', 'href="/exports/"'):
        assert href in nav
    reviewer = re.search(r'<nav class="mainnav"[^>]*>(.*?)</nav>', world.client("reviewer").get("/licenses/").text,
                         re.S).group(1)
    assert 'href="/audit/"' not in reviewer and 'href="/exports/"' not in reviewer and 'href="/models/"' in reviewer


# -- verification, on a farm of its own (tampering breaks its log for good) -----------------------------

def test_verify_says_the_chain_checks_out_and_then_names_the_first_edited_event(client):
    login_as(client, "auditor")
    page = client.get("/audit/verify")
    assert page.status_code == 200
    verdict = re.search(r'data-testid="verdict">(.*?)</div>', page.text, re.S).group(1)
    assert "The chain checks out." in verdict
    head = re.search(r'data-testid="head">([^<]+)<', page.text).group(1)

    farm = farm_of(client)
    with transaction(farm.session_factory) as session:
        victim = session.scalar(select(AuditEvent.id).where(AuditEvent.action == "license.created")
                                .order_by(AuditEvent.id).offset(2).limit(1))
        session.execute(update(AuditEvent).where(AuditEvent.id == victim).values(actor_name="mallory"))
    page = client.get("/audit/verify?anchor=" + head)
    verdict = re.search(r'data-testid="verdict">(.*?)</div>', page.text, re.S).group(1)
    assert "The chain is broken." in verdict
    assert f'href="/audit/events/{victim}" data-testid="first-bad-event">event {victim}</a>' in verdict
    assert "the event was edited" in verdict

    bad = client.get("/audit/verify?anchor=not-an-anchor")
    assert bad.status_code == 400 and "is not ID:SHA256" in field_error(bad.text, "anchor")


# -- on PostgreSQL: the action list's recursive index walk, prefix filters, paging, verify, export -------

def test_the_audit_pages_on_postgres(postgres_app):
    client = postgres_app.test_client()
    login_as(client, "auditor")
    page = client.get("/audit/?action=license.*")
    assert page.status_code == 200
    ids = event_ids(page.text)
    assert len(ids) == 7 and ids == sorted(ids, reverse=True)  # the seeded licenses
    for action in ("license.created", "model.registered", "user.created", "user.login"):
        assert f'<option value="{action}">' in page.text
    assert not event_ids(client.get("/audit/?action=license_*").text)  # '_' is no wildcard
    older = client.get(f"/audit/?action=license.*&before={ids[2]}")
    assert event_ids(older.text) == ids[3:]
    verdict = client.get("/audit/verify").text
    assert "The chain checks out." in verdict
    document = client.get(f"/audit/export?from={TODAY}&to={TODAY}&format=json").json
    assert [e["id"] for e in document["events"]][:7] == sorted(ids)
