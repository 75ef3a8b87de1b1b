"""The "New batch" page through the Flask test client: rows typed into the table or uploaded as CSV,
seeds, formats, overrides; Check shows the render count and GPU estimate without writing; Submit
makes one job even when the same form is posted twice; bad input at its field; visibility; and the
whole flow on PostgreSQL."""

from __future__ import annotations

import html
import io
import re

import pytest
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from farm.campaigns.service import archive_campaign
from farm.context import FarmContext, prepare_database
from farm.db.models import Job, Render
from farm.db.session import transaction
from farm.settings import load_settings
from tests.dashboard.campaign_helpers import (
    Forms, count, field_error, input_value, make_campaign, make_template, submission_key, unique,
)
from tests.dashboard.campaign_helpers import client, farm, shared_app  # noqa: F401 (fixtures)
from tests.dashboard.conftest import add_user, login_as, make_app


@pytest.fixture
def manager(client):
    return login_as(client, "campaign_manager")


@pytest.fixture
def campaign(farm, manager):
    return make_campaign(farm, manager, style_suffix="studio light", channel_formats=["display_mrec"])


@pytest.fixture
def version(farm, manager, campaign):
    return make_template(farm, manager, campaign.id)


def _url(campaign) -> str:
    return f"/campaigns/{campaign.id}/batches/new"


def _form(version, **changes) -> list[tuple[str, str]]:
    """The form as the page posts it; `formats` is a list (checkboxes), other values are text."""
    values = {"action": "check", "template_version_id": str(version.id), "rows_source": "table",
              "rows[0].product": "red shoe", "rows[0].background": "sand",
              "rows[1].product": "bag", "rows[1].background": "snow",
              "seeds": "1, 2", "seed_count": "", "model": "", "sampler": "", "steps": "2", "cfg_scale": "",
              "width": "", "height": "", "priority": "5", "name": "round one", "formats": ["display_mrec"],
              **changes}
    pairs = []
    for key, value in values.items():
        pairs += [(key, item) for item in value] if isinstance(value, list) else [(key, value)]
    return pairs


def _jobs(farm, campaign_id):
    with transaction(farm.session_factory) as session:
        return session.scalars(select(Job).where(Job.campaign_id == campaign_id).order_by(Job.id)).all()


def _renders(farm, job_id):
    with transaction(farm.session_factory) as session:
        return session.scalars(select(Render).where(Render.job_id == job_id).order_by(Render.index)).all()


# -- the page ----------------------------------------------------------------------------------------------

def test_new_batch_page_offers_the_template_columns_and_campaign_formats(client, farm, manager, campaign, version):
    older = make_template(farm, manager, campaign.id, name=unique("aaa"), body="{{ thing }}", variables=["thing"])
    page = client.get(_url(campaign) + f"?template_version_id={version.id}")
    assert page.status_code == 200
    for field, label in [("template_version_id", "Template version"), ("csv", "Variable rows CSV file"),
                         ("seeds", "Seeds"), ("seed_count", "Number of random seeds"),
                         ("format-display_mrec", "Display medium rectangle (MREC)"), ("model", "Model"),
                         ("sampler", "Sampler"), ("steps", "Steps"), ("cfg_scale", "CFG scale"),
                         ("width", "Width"), ("height", "Height"), ("name", "Job name"), ("priority", "Priority"),
                         ("rows[0].product", "Row 1 product"), ("rows[0].background", "Row 1 background")]:
        assert re.search(f'<label[^>]* for="{re.escape(field)}"', page.text) and label in page.text, field
    assert f'<option value="{version.id}" selected>' in page.text
    assert f'<option value="{older.id}"' in page.text
    assert 'value="display_mrec" checked' in page.text and 'value="linkedin" checked' not in page.text
    assert 'name="submission_key"' in page.text
    assert ">Check</button>" in page.text and "Submit batch" not in page.text

    default = client.get(_url(campaign))  # without a choice: the first template's latest version
    assert f'<option value="{older.id}" selected>' in default.text and 'id="rows[0].thing"' in default.text


def test_a_campaign_without_templates_says_so(client, farm, manager):
    empty = make_campaign(farm, manager)
    page = client.get(_url(empty))
    assert page.status_code == 200 and "has no templates yet" in page.text
    assert f"/campaigns/{empty.id}/templates/new" in page.text


def test_check_counts_renders_and_estimates_without_writing(client, farm, campaign, version):
    before = count(farm, Job), count(farm, Render)
    page = Forms(client).post(_url(campaign), _form(version))
    assert page.status_code == 200
    assert "Check: 4 renders" in page.text
    assert "2 rows × 2 seeds × 1 format" in page.text and "tiny-sd" in page.text
    assert "Estimated GPU time" in page.text and "a default for this model" in page.text
    assert "300×250" in page.text
    assert "Submit batch" in page.text
    assert (count(farm, Job), count(farm, Render)) == before
    # The typed values are all still there for the submission.
    assert input_value(page.text, "rows[1].background") == "snow" and input_value(page.text, "seeds") == "1, 2"
    assert input_value(page.text, "steps") == "2" and input_value(page.text, "name") == "round one"


def test_submit_makes_one_job_and_goes_to_its_page(client, farm, campaign, version, manager):
    checked = Forms(client).post(_url(campaign), _form(version))
    key = submission_key(checked.text)
    form = _form(version, action="submit", submission_key=key)
    response = Forms(client).post(_url(campaign), form)
    assert response.status_code == 302
    (job,) = _jobs(farm, campaign.id)
    target = f"/jobs/{job.id}" if "jobs.view" in client.application.view_functions else f"/campaigns/{campaign.id}"
    assert response.headers["Location"] == target
    assert (job.name, job.submission_key, job.seeds, job.formats, job.priority) == (
        "round one", key, [1, 2], ["display_mrec"], 5)
    assert job.params["steps"] == 2 and job.submitted_by_id == manager.id
    renders = _renders(farm, job.id)
    assert len(renders) == 4
    assert renders[0].params["prompt"] == "red shoe on sand, studio light"
    assert (renders[0].params["format_width"], renders[0].params["format_height"]) == (300, 250)

    # The same form again (a double click, the browser resubmitting): no second job.
    again = Forms(client).post(_url(campaign), form)
    assert again.status_code == 302 and again.headers["Location"] == target
    assert len(_jobs(farm, campaign.id)) == 1 and len(_renders(farm, job.id)) == 4
    page = client.get(target)
    assert "submitted already" in page.text


def test_submit_with_random_seeds_no_formats_and_overrides(client, farm, campaign, version):
    form = _form(version, action="submit", seeds="", seed_count="3", formats=[], sampler="Euler", cfg_scale="5.5",
                 width="128", height="64", priority="9", name="", model="tiny-sd",
                 submission_key=unique("key").replace(" ", "-"))
    assert Forms(client).post(_url(campaign), form).status_code == 302
    (job,) = _jobs(farm, campaign.id)
    assert len(job.seeds) == 3 and job.formats == [] and job.priority == 9 and job.name is None
    assert job.params == {"model": "tiny-sd", "steps": 2, "cfg_scale": 5.5, "sampler": "Euler", "width": 128,
                          "height": 64}
    renders = _renders(farm, job.id)
    assert len(renders) == 6 and {(r.params["width"], r.params["height"]) for r in renders} == {(128, 64)}


def test_blank_rows_are_skipped_and_errors_name_the_table_row(client, farm, manager, campaign, version):
    form = _form(version, **{"rows[1].product": "", "rows[1].background": "",
                             "rows[2].product": "hat", "rows[2].background": "grass"})
    page = Forms(client).post(_url(campaign), form)
    assert page.status_code == 200 and "Check: 4 renders" in page.text

    strict = make_template(farm, manager, campaign.id, name=unique("strict"), body="{{ product }}",
                           variables=["product", "background"])
    form = _form(strict, **{"rows[1].product": "", "rows[1].background": "",
                            "rows[2].product": "", "rows[2].background": "grass"})
    page = Forms(client).post(_url(campaign), form)
    assert page.status_code == 400
    assert "empty prompt" in field_error(page.text, "rows[2]")  # the third row of the table, as typed


@pytest.mark.parametrize("changes, field, message", [
    ({"seeds": "1, two"}, "seeds", "'two' is not a whole number"),
    ({"seeds": "1, 1"}, "seeds", "listed twice"),
    ({"seeds": "-3"}, "seeds", "from 0 to"),
    ({"seeds": "", "seed_count": "0"}, "seed_count", "at least 1"),
    ({"seeds": "", "seed_count": "many"}, "seed_count", "must be a whole number"),
    ({"seeds": "", "seed_count": ""}, "seeds", "give seeds or a seed count"),
    ({"seeds": "1", "seed_count": "20000"}, "seeds", None),  # seeds win: this one is fine (checked below)
    ({"formats": ["tiktok_vertical"]}, "formats", "unknown channel format"),
    ({"model": "no-such-model"}, "model", "unknown model"),
    ({"model": "lanczos"}, "model", "not a checkpoint"),
    ({"sampler": "Bogus"}, "sampler", "Bogus"),
    ({"steps": "a few"}, "steps", "must be a whole number"),
    ({"steps": "0"}, "steps", "between 1 and"),
    ({"cfg_scale": "hot"}, "cfg_scale", "must be a number"),
    ({"cfg_scale": "31"}, "cfg_scale", "30"),
    ({"width": "100", "height": "64"}, "width", "multiple of 8"),
    ({"width": "4096", "height": "64"}, "width", "between 64 and 2048"),
    ({"priority": "11"}, "priority", "from 0 to"),
    ({"priority": "high"}, "priority", "must be a whole number"),
    ({"name": "n" * 201}, "name", "at most 200"),
    ({"rows[0].product": "", "rows[0].background": "", "rows[1].product": "", "rows[1].background": ""},
     "rows", "at least one row"),
    ({"template_version_id": "999999"}, "template_version_id", "choose a template version"),
])
@pytest.mark.parametrize("action", ["check", "submit"])
def test_bad_input_is_shown_at_the_field_and_submits_nothing(client, farm, campaign, version, changes, field,
                                                            message, action):
    form = _form(version, action=action, **changes)
    if action == "submit":
        form.append(("submission_key", unique("k").replace(" ", "-")))
    page = Forms(client).post(_url(campaign), form)
    if message is None:
        assert page.status_code in (200, 302)
        return
    assert page.status_code == 400, page.text[:2000]
    assert message in (field_error(page.text, field) or ""), page.text[:4000]
    assert _jobs(farm, campaign.id) == []
    assert "Submit batch" not in page.text  # a failed check offers no submission
    if field != "name":
        assert input_value(page.text, "name") == "round one"


def test_a_version_of_another_campaign_is_refused(client, farm, manager, campaign, version):
    elsewhere = make_template(farm, manager, make_campaign(farm, manager).id)
    page = Forms(client).post(_url(campaign), _form(version, template_version_id=str(elsewhere.id)))
    assert page.status_code == 400 and "choose a template version" in field_error(page.text, "template_version_id")


def test_too_many_renders_names_the_factor(client, farm, campaign, version):
    seeds = ", ".join(str(n) for n in range(5001))
    page = Forms(client).post(_url(campaign), _form(version, seeds=seeds))
    assert page.status_code == 400 and "the limit is 10,000 per job" in field_error(page.text, "seeds")


def test_switching_the_template_version_keeps_matching_columns(client, farm, manager, campaign, version):
    other = make_template(farm, manager, campaign.id, name=unique("other"), body="{{ product }} in {{ light }}",
                          variables=["product", "light"])
    page = Forms(client).post(_url(campaign), _form(version, action="load", template_version_id=str(other.id)))
    assert page.status_code == 200
    assert input_value(page.text, "rows[0].product") == "red shoe" and input_value(page.text, "rows[0].light") == ""
    assert 'id="rows[0].background"' not in page.text
    assert f'<option value="{other.id}" selected>' in page.text


def test_add_row_without_javascript(client, campaign, version):
    page = Forms(client).post(_url(campaign), _form(version, action="add_row"))
    assert page.status_code == 200 and input_value(page.text, "rows[2].product") == ""


# -- CSV uploads ----------------------------------------------------------------------------------------------

def _upload(version, data: bytes, action="check", filename="rows.csv", **changes):
    form = dict(_form(version, action=action, **changes))
    form = {k: v for k, v in form.items() if not k.startswith("rows[")}
    form["formats"] = "display_mrec"
    form["csv"] = (io.BytesIO(data), filename)
    return form


def test_csv_rows_are_checked_then_carried_to_the_submission(client, farm, campaign, version):
    data = "product;background\nred shoe;sand\nbag;snow\nhat;grass\n".encode("utf-8-sig")
    forms = Forms(client)
    page = forms.post(_url(campaign), _upload(version, data), content_type="multipart/form-data")
    assert page.status_code == 200, page.text[:3000]
    assert "Check: 6 renders" in page.text and "3 rows" in page.text and "rows.csv" in page.text
    assert 'name="rows_json"' in page.text and 'name="rows_source" value="csv"' in page.text
    rows_json = html.unescape(re.search(r'name="rows_json" value="([^"]*)"', page.text).group(1))
    key = submission_key(page.text)
    response = forms.post(_url(campaign), [("action", "submit"), ("template_version_id", str(version.id)),
                                           ("rows_source", "csv"), ("rows_json", rows_json), ("seeds", "1, 2"),
                                           ("formats", "display_mrec"), ("steps", "2"), ("priority", "5"),
                                           ("submission_key", key)])
    assert response.status_code == 302
    (job,) = _jobs(farm, campaign.id)
    assert job.variable_rows == [{"product": "red shoe", "background": "sand"}, {"product": "bag", "background": "snow"},
                                 {"product": "hat", "background": "grass"}]
    assert len(_renders(farm, job.id)) == 6


def test_csv_rows_can_move_into_the_table(client, campaign, version):
    data = b"product,background\nred shoe,sand\n"
    page = Forms(client).post(_url(campaign), _upload(version, data), content_type="multipart/form-data")
    rows_json = html.unescape(re.search(r'name="rows_json" value="([^"]*)"', page.text).group(1))
    page = Forms(client).post(_url(campaign), [("action", "table"), ("template_version_id", str(version.id)),
                                               ("rows_source", "csv"), ("rows_json", rows_json)])
    assert page.status_code == 200 and input_value(page.text, "rows[0].product") == "red shoe"
    assert 'name="rows_json"' not in page.text


@pytest.mark.parametrize("data, message", [
    (b"product,colour\nshoe,red\n", "missing required column: background"),
    ("product,background\nshoe,sand\n".encode("utf-32"), "UTF-32"),
    (b"product,background\n\xff\xfe\xfa,sand\n", "not UTF-8 or UTF-16"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "not UTF-8"),
    (b"", "empty"),
    (b"product,background\n", "no rows"),
    (b"product,background\nshoe\n", "line 2 has 1 values"),
])
def test_bad_csv_files_are_shown_at_the_file_field(client, farm, campaign, version, data, message):
    page = Forms(client).post(_url(campaign), _upload(version, data), content_type="multipart/form-data")
    assert page.status_code == 400
    assert message in (field_error(page.text, "csv") or ""), page.text[:3000]
    assert _jobs(farm, campaign.id) == []


def test_tampered_carried_rows_are_refused(client, campaign, version):
    page = Forms(client).post(_url(campaign), [("action", "check"), ("template_version_id", str(version.id)),
                                               ("rows_source", "csv"), ("rows_json", "{not json"), ("seeds", "1")])
    assert page.status_code == 400 and "upload it again" in field_error(page.text, "csv")
    page = Forms(client).post(_url(campaign), [
        ("action", "check"), ("template_version_id", str(version.id)), ("rows_source", "csv"), ("seeds", "1"),
        ("rows_json", '{"filename": "x.csv", "columns": ["product"], "rows": [["shoe"]], "lines": [2]}')])
    assert page.status_code == 400 and "line 2, column background" in field_error(page.text, "csv")
    for rows_json in ('{"columns": ["product"], "rows": [3], "lines": [2]}',
                      '{"columns": [1], "rows": [["x"]], "lines": [2]}',
                      '{"columns": ["product"], "rows": [["x", "y"]], "lines": [2]}',
                      '{"columns": ["product"], "rows": [["x"]], "lines": ["2"]}', '[]'):
        for action in ("check", "table"):
            page = Forms(client).post(_url(campaign), [
                ("action", action), ("template_version_id", str(version.id)), ("rows_source", "csv"),
                ("seeds", "1"), ("rows_json", rows_json)])
            assert page.status_code == 400 and "upload it again" in field_error(page.text, "csv"), rows_json


@pytest.fixture
def small_limits_client(farm_home):
    """A farm whose CSV limits are small: 2 KiB and 5 rows per job."""
    ctx = FarmContext(load_settings({"FARM_HOME": str(farm_home), "FARM_MAX_CSV_BYTES": "2048",
                                     "FARM_MAX_ROWS_PER_JOB": "5"}))
    prepare_database(ctx)
    yield make_app(ctx).test_client()
    ctx.db_engine.dispose()


def test_csv_too_large_or_too_many_rows(small_limits_client):
    client = small_limits_client
    manager = login_as(client, "campaign_manager")
    farm = client.application.extensions["farm"]
    campaign = make_campaign(farm, manager)
    version = make_template(farm, manager, campaign.id)
    too_large = b"product,background\n" + b"shoe,sand\n" * 300
    page = Forms(client).post(_url(campaign), _upload(version, too_large), content_type="multipart/form-data")
    assert page.status_code == 400 and "the limit is 2,048 bytes" in field_error(page.text, "csv")
    too_many = b"product,background\n" + b"shoe,sand\n" * 6
    page = Forms(client).post(_url(campaign), _upload(version, too_many), content_type="multipart/form-data")
    assert page.status_code == 400 and "more than 5 rows" in field_error(page.text, "csv")
    typed = {f"rows[{i}].{c}": "x" for i in range(6) for c in ("product", "background")}
    page = Forms(client).post(_url(campaign), _form(version, **typed))
    assert page.status_code == 400 and "more than 5 rows" in field_error(page.text, "rows")


# -- who may ---------------------------------------------------------------------------------------------------

def test_archived_campaign_takes_no_batch(client, farm, manager, campaign, version):
    with transaction(farm.session_factory) as session:
        archive_campaign(session, manager, campaign.id)
    response = client.get(_url(campaign))
    assert response.status_code == 302 and response.headers["Location"] == f"/campaigns/{campaign.id}"
    page = Forms(client).post(_url(campaign), _form(version, action="submit", submission_key="archived-1"))
    assert page.status_code == 400 and "archived" in page.text
    assert _jobs(farm, campaign.id) == []


def test_invisible_campaign_is_not_found_and_reviewer_is_refused(client, farm, version):
    owner = add_user(farm, "campaign_manager")
    hidden = make_campaign(farm, owner)
    assert client.get(_url(hidden)).status_code == 404
    assert Forms(client).post(_url(hidden), _form(version)).status_code == 404
    reviewer_client = client.application.test_client()
    login_as(reviewer_client, "reviewer")
    assert reviewer_client.get(_url(hidden)).status_code == 403


def test_submission_without_csrf_token_is_refused(client, farm, campaign, version):
    response = client.post(_url(campaign), data=MultiDict(_form(version, action="submit", submission_key="no-token")))
    assert response.status_code == 400 and "stale" in response.text
    assert _jobs(farm, campaign.id) == []


# -- PostgreSQL ------------------------------------------------------------------------------------------------

@pytest.mark.integration
def test_batch_submission_through_the_page_on_postgres(postgres_app):
    client = postgres_app.test_client()
    manager = login_as(client, "campaign_manager")
    farm = postgres_app.extensions["farm"]
    campaign = make_campaign(farm, manager, style_suffix="studio light")
    version = make_template(farm, manager, campaign.id)
    forms = Forms(client)
    checked = forms.post(_url(campaign), _form(version, formats=[]))
    assert checked.status_code == 200 and "Check: 4 renders" in checked.text
    form = _form(version, formats=[], action="submit", submission_key=submission_key(checked.text))
    first = forms.post(_url(campaign), form)
    second = forms.post(_url(campaign), form)
    assert first.status_code == second.status_code == 302
    assert first.headers["Location"] == second.headers["Location"]
    (job,) = _jobs(farm, campaign.id)
    renders = _renders(farm, job.id)
    assert len(renders) == 4 and {r.state for r in renders} == {"queued"}
    assert sorted(r.params["prompt"] for r in renders) == ["bag on snow, studio light"] * 2 + [
        "red shoe on sand, studio light"] * 2
