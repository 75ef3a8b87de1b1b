"""`farm audit verify` on an honest log and on each kind of tampering, `farm audit export`, the
auditor reports, and `farm licenses` / `farm models` from the command line (embedded farm)."""

import csv
import io
import json
from datetime import date, timedelta

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file
from sqlalchemy import select, text, update

from farm.accounts.service import create_user
from farm.audit.log import _event_hash, record_event
from farm.audit.reports import campaign_license_report, license_usage, list_refusals, model_usage
from farm.cli import main
from farm.db.models import AuditEvent, License
from farm.db.session import transaction
from tests.unit.compliance_world import build_world


@pytest.fixture
def cli(embedded_farm):
    with transaction(embedded_farm.session_factory) as session:
        create_user(session, name="root-admin", role="admin")
        create_user(session, name="ana", role="campaign_manager")
        for n in range(6):
            record_event(session, action=f"test.event{n}", entity_type="test", entity_id=n, after={"n": n})

    def run(*args: str):
        return CliRunner().invoke(main, list(args), env={"FARM_HOME": str(embedded_farm.settings.home)})

    run.farm = embedded_farm
    return run


def _ids(farm) -> list[int]:
    with transaction(farm.session_factory) as session:
        return list(session.scalars(select(AuditEvent.id).order_by(AuditEvent.id)))


def _sql(farm, statement: str, **params) -> None:
    with farm.db_engine.begin() as connection:
        connection.execute(text(statement), params)


def test_verify_passes_on_an_honest_log_and_prints_the_head(cli):
    result = cli("audit", "verify")
    assert result.exit_code == 0, result.output
    last = _ids(cli.farm)[-1]
    assert f"audit log OK: {len(_ids(cli.farm))} events; head {last}:" in result.output
    data = json.loads(cli("audit", "verify", "--json").output)
    assert data["ok"] is True and data["head"].startswith(f"{last}:")


def _edit(farm, ids):
    _sql(farm, "UPDATE audit_events SET after = :after WHERE id = :id", after='{"n": 1000}', id=ids[-3])
    return ids[-3]


def _delete(farm, ids):
    _sql(farm, "DELETE FROM audit_events WHERE id = :id", id=ids[-3])
    return ids[-2]


def _reorder(farm, ids):
    a, b = ids[-4], ids[-3]
    _sql(farm, "UPDATE audit_events SET id = -1 WHERE id = :a", a=a)
    _sql(farm, "UPDATE audit_events SET id = :a WHERE id = :b", a=a, b=b)
    _sql(farm, "UPDATE audit_events SET id = :b WHERE id = -1", b=b)
    return a


def _insert(farm, ids):
    """A forged event among the others, its own hash computed correctly: its link cannot be right
    (the next event already holds the only prev_hash that would fit)."""
    for event_id in reversed(ids[-3:]):
        _sql(farm, "UPDATE audit_events SET id = :new WHERE id = :old", new=event_id + 1, old=event_id)
    forged_id = ids[-3]
    with transaction(farm.session_factory) as session:
        previous = session.get(AuditEvent, ids[-4])
        forged = AuditEvent(id=forged_id, occurred_at=previous.occurred_at, actor_id=None, actor_name="root-admin",
                            action="license.updated", entity_type="license", entity_id="Apache-2.0",
                            before={"commercial_use": "forbidden"}, after={"commercial_use": "allowed"},
                            prev_hash="f" * 64)
        forged.hash = _event_hash(forged)
        session.add(forged)
    return forged_id


@pytest.mark.parametrize("tamper", [_edit, _delete, _reorder, _insert], ids=["edited", "deleted", "reordered",
                                                                                "inserted"])
def test_verify_fails_naming_the_first_bad_event(cli, tamper):
    first_bad = tamper(cli.farm, _ids(cli.farm))
    result = cli("audit", "verify")
    assert result.exit_code == 1
    assert f"audit log FAILED: event {first_bad} " in result.output


def test_an_anchor_catches_a_rewritten_tail_and_a_cut_one(cli):
    ids = _ids(cli.farm)
    head = json.loads(cli("audit", "verify", "--json").output)["head"]
    # Someone with the database rewrites an event and recomputes every hash after it: the chain
    # holds together again, which only a head kept outside the database can show.
    with transaction(cli.farm.session_factory) as session:
        events = list(session.scalars(select(AuditEvent).where(AuditEvent.id >= ids[-3]).order_by(AuditEvent.id)))
        prev = session.get(AuditEvent, ids[-4]).hash
        events[0].after = {"n": 1000}
        for event in events:
            session.execute(update(AuditEvent).where(AuditEvent.id == event.id).values(prev_hash=f"{event.id:064x}"))
        session.flush()
        for event in events:
            event.prev_hash = prev
            event.hash = _event_hash(event)
            prev = event.hash
    assert cli("audit", "verify").exit_code == 0  # what a plain chain cannot see
    result = cli("audit", "verify", "--anchor", head)
    assert result.exit_code == 1 and f"event {ids[-1]} hash differs from the anchor" in result.output

    _sql(cli.farm, "DELETE FROM audit_events WHERE id = :id", id=ids[-1])
    result = cli("audit", "verify", "--anchor", head)
    assert result.exit_code == 1 and f"event {ids[-1]} the anchored event is missing" in result.output
    bad = cli("audit", "verify", "--anchor", "12:abc")
    assert bad.exit_code == 2 and "error: --anchor:" in bad.output


def test_export_a_date_range_as_csv_and_json(cli, tmp_path):
    today = date.today()
    result = cli("audit", "export", "--from", str(today), "--to", str(today), "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert [row["action"] for row in rows][-6:] == [f"test.event{n}" for n in range(6)]
    assert json.loads(rows[-1]["after"]) == {"n": 5}
    out = tmp_path / "audit.json"
    assert cli("audit", "export", "--from", str(today), "--to", str(today), "--out", str(out)).exit_code == 0
    exported = json.loads(out.read_text())
    assert [e["id"] for e in exported["events"]] == _ids(cli.farm)
    assert exported["head"]["anchor"] == f"{exported['events'][-1]['id']}:{exported['events'][-1]['hash']}"
    past = cli("audit", "export", "--from", "2001-01-01", "--to", str(today - timedelta(days=1)))
    assert json.loads(past.output)["events"] == []
    bad = cli("audit", "export", "--from", "yesterday", "--to", str(today))
    assert bad.exit_code == 2 and "error: --from: 'yesterday' is not a date" in bad.output
    backwards = cli("audit", "export", "--from", str(today), "--to", "2001-01-01")
    assert backwards.exit_code == 2 and "error: --to:" in backwards.output


def test_licenses_from_the_command_line_are_validated_and_audited(cli):
    bad = cli("licenses", "add", "My License", "--name", "x", "--commercial-use", "allowed", "--as", "root-admin")
    assert bad.exit_code == 2 and "error: IDENTIFIER (identifier):" in bad.output
    capped = cli("licenses", "add", "LicenseRef-Acme-Model", "--name", "Acme model license",
                 "--commercial-use", "revenue_capped", "--as", "root-admin")
    assert capped.exit_code == 2 and "--revenue-cap" in capped.output
    added = cli("licenses", "add", "LicenseRef-Acme-Model", "--name", "Acme model license",
                "--commercial-use", "revenue_capped", "--revenue-cap", "2,000,000", "--attribution", "Made with Acme",
                "--restriction", "No political ads", "--as", "root-admin")
    assert added.exit_code == 0, added.output
    not_admin = cli("licenses", "edit", "LicenseRef-Acme-Model", "--commercial-use", "allowed", "--as", "ana")
    assert not_admin.exit_code == 2 and "error: --as: farm user 'ana' is campaign_manager" in not_admin.output
    nobody = cli("licenses", "edit", "LicenseRef-Acme-Model", "--commercial-use", "allowed", "--as", "mallory")
    assert nobody.exit_code == 2 and "no farm user named 'mallory'" in nobody.output
    edited = cli("licenses", "edit", "LicenseRef-Acme-Model", "--commercial-use", "forbidden", "--revenue-cap", "none",
                 "--reason", "vendor ended the deal", "--as", "root-admin")
    assert edited.exit_code == 0, edited.output
    shown = json.loads(cli("licenses", "show", "LicenseRef-Acme-Model", "--json").output)
    assert (shown["commercial_use"], shown["revenue_cap_usd"], shown["attribution_text"], shown["use_restrictions"]) == (
        "forbidden", None, "Made with Acme", ["No political ads"])
    with transaction(cli.farm.session_factory) as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "license.updated")).one()
        assert event.actor_name == "root-admin"
        assert event.before == {"commercial_use": "revenue_capped", "revenue_cap_usd": 2_000_000}
        assert (event.after["commercial_use"], event.after["revenue_cap_usd"], event.after["reason"]) == (
            "forbidden", None, "vendor ended the deal")
        assert session.scalar(select(License.identifier).where(License.identifier == "LicenseRef-Acme-Model"))


def test_models_from_the_command_line(cli):
    models = cli.farm.settings.models_dir
    save_file({"w": torch.ones(2, 2)}, str(models / "style.safetensors"))
    added = cli("models", "add", str(models / "style.safetensors"), "--name", "style", "--kind", "lora",
                "--license", "CreativeML-OpenRAIL-M", "--base", "tiny-sd", "--source", "https://example.invalid/style",
                "--as", "root-admin")
    assert added.exit_code == 0, added.output
    assert "added by root-admin" in added.output
    listed = json.loads(cli("models", "list", "--kind", "lora", "--json").output)
    assert [(m["name"], m["base_model"], m["license"], m["added_by"]) for m in listed] == [
        ("style", "tiny-sd", "CreativeML-OpenRAIL-M", "root-admin")]
    outside = cli("models", "add", "/etc/hostname", "--name", "x", "--kind", "vae", "--license", "Apache-2.0",
                  "--architecture", "sd1", "--as", "root-admin")
    assert outside.exit_code == 2 and "outside the model folders" in outside.output
    suspended = cli("models", "suspend", "style", "--reason", "trained on unlicensed images", "--as", "root-admin")
    assert suspended.exit_code == 0 and "model style: suspended" in suspended.output
    unknown = cli("models", "suspend", "nope", "--reason", "x", "--as", "root-admin")
    assert unknown.exit_code == 2 and "error: NAME: unknown model 'nope'" in unknown.output
    shown = json.loads(cli("models", "show", "style", "--json").output)
    assert (shown["model"]["status"], shown["model"]["status_reason"]) == ("suspended", "trained on unlicensed images")
    assert cli("models", "unsuspend", "style", "--as", "root-admin").exit_code == 0
    relicensed = cli("models", "set-license", "style", "Apache-2.0", "--as", "root-admin")
    assert relicensed.exit_code == 0 and "license Apache-2.0" in relicensed.output
    assert cli("audit", "verify").exit_code == 0


def test_auditor_reports_count_assets_by_the_license_they_were_made_under(tmp_path, tiny_model_dir):
    world = build_world(tmp_path / "farm-data", tiny_model_dir)
    try:
        from farm.jobs.batch import submit_batch
        from farm.licenses.policy import PolicyRefused

        with pytest.raises(PolicyRefused):
            submit_batch(world.farm, world.manager, world.batch(world.commercial_id, model="ckpt-fluxdev"))
        with transaction(world.farm.session_factory) as session:
            usage = {row.model: row for row in model_usage(session)}
            assert (usage["tiny-sd"].assets, usage["tiny-sd"].campaigns, usage["tiny-sd"].commercial_campaigns) == (
                2, 2, 1)
            assert usage["tiny-sd"].rendered_under == ["Apache-2.0"] and usage["ckpt-fluxdev"].assets == 0
            licenses = {row.license: row for row in license_usage(session)}
            assert licenses["Apache-2.0"].assets == 2 and "tiny-sd" in licenses["Apache-2.0"].models_rendered
            assert "ckpt-fluxdev" in licenses["LicenseRef-FLUX.1-dev-Non-Commercial"].models_registered
            report = campaign_license_report(session, world.commercial_id)
            assert (report.campaign, report.commercial, report.assets, report.refusals) == ("Commercial", True, 1, 1)
            assert [(line.license, line.models, line.assets) for line in report.licenses] == [
                ("Apache-2.0", ["tiny-sd"], 1)]
            refusals = list_refusals(session, date.today(), date.today())
            assert [(r.model, r.rule, r.actor, r.stage) for r in refusals] == [
                ("ckpt-fluxdev", "separate_license_required", "ana", "submission")]
            assert list_refusals(session, "2001-01-01", "2001-12-31") == []
            # The renders the world made are in the log by now (the reports write pending events first).
            assert len(session.scalars(select(AuditEvent).where(AuditEvent.action == "render.succeeded")).all()) == 2
    finally:
        world.farm.db_engine.dispose()
