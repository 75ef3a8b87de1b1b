"""Template pages through the Flask test client: the list, create, view with versions, edit (a new
version), the preview (JSON for campaigns.js and the no-JavaScript form post), and bad input at
its field (syntax errors and unknown variables before saving); visibility."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from farm.db.models import PromptTemplate, TemplateVersion
from farm.db.session import transaction
from tests.dashboard.campaign_helpers import Forms, count, field_error, input_value, make_campaign, make_template, unique
from tests.dashboard.campaign_helpers import client, farm, shared_app  # noqa: F401 (fixtures)
from tests.dashboard.conftest import add_user, login_as


@pytest.fixture
def manager(client):
    return login_as(client, "campaign_manager")


@pytest.fixture
def campaign(farm, manager):
    return make_campaign(farm, manager, style_suffix="studio light", style_negative="blurry")


def _versions(farm, template_id):
    with transaction(farm.session_factory) as session:
        return session.scalars(select(TemplateVersion).where(TemplateVersion.template_id == template_id)
                               .order_by(TemplateVersion.version)).all()


def _form(**changes):
    form = {"action": "save", "name": unique("hero"), "variables": "product, background",
            "body": "{{ product }} on {{ background }}", "negative_body": "low quality",
            "default_params.model": "tiny-sd", "default_params.sampler": "Euler", "default_params.steps": "4",
            "default_params.cfg_scale": "6.5", "default_params.width": "64", "default_params.height": "64",
            "rows[0].product": "red shoe", "rows[0].background": "sand"}
    return {**form, **changes}


# -- list --------------------------------------------------------------------------------------------

def test_list_shows_templates_of_visible_campaigns(client, farm, manager, campaign):
    mine = make_template(farm, manager, campaign.id)
    other_owner = add_user(farm, "campaign_manager")
    hidden = make_template(farm, other_owner, make_campaign(farm, other_owner).id)
    page = client.get("/templates/")
    assert page.status_code == 200
    assert mine.template_name in page.text and hidden.template_name not in page.text
    assert f"New template for {campaign.name}" in page.text
    assert f'/campaigns/{campaign.id}/batches/new?template_version_id={mine.id}' in page.text


# -- create ------------------------------------------------------------------------------------------

def test_new_template_form_has_labelled_fields(client, campaign):
    page = client.get(f"/campaigns/{campaign.id}/templates/new")
    assert page.status_code == 200
    for field, label in [("name", "Template name"), ("variables", "Variables"), ("body", "Prompt template"),
                         ("negative_body", "Negative prompt template"), ("default_params.model", "Model"),
                         ("default_params.sampler", "Sampler"), ("default_params.steps", "Steps"),
                         ("default_params.cfg_scale", "CFG scale"), ("default_params.width", "Width"),
                         ("default_params.height", "Height")]:
        assert f'<label for="{field}">{label}</label>' in page.text, field
    assert ">Preview</button>" in page.text and ">Save template</button>" in page.text
    assert "campaigns.js" in page.text


def test_create_template_and_see_its_page(client, farm, manager, campaign):
    form = _form()
    response = Forms(client).post(f"/campaigns/{campaign.id}/templates/new", form)
    assert response.status_code == 302, response.text
    template_id = int(response.headers["Location"].rsplit("/", 1)[1])
    (version,) = _versions(farm, template_id)
    assert (version.body, version.negative_body, version.variables) == (
        "{{ product }} on {{ background }}", "low quality", ["product", "background"])
    assert version.default_params == {"model": "tiny-sd", "sampler": "Euler", "steps": 4, "cfg_scale": 6.5,
                                      "width": 64, "height": 64}
    assert version.created_by_id == manager.id

    page = client.get(f"/templates/{template_id}")
    assert page.status_code == 200
    for text in (form["name"], "Version 1", "{{ product }} on {{ background }}", "low quality", manager.name,
                 "steps 4", "studio light", f"/campaigns/{campaign.id}/batches/new?template_version_id={version.id}"):
        assert text in page.text, text


def test_variables_left_empty_are_the_ones_the_texts_use(client, farm, campaign):
    response = Forms(client).post(f"/campaigns/{campaign.id}/templates/new",
                                  _form(variables="", body="{{ thing }} in {{ place }}", negative_body=""))
    assert response.status_code == 302
    (version,) = _versions(farm, int(response.headers["Location"].rsplit("/", 1)[1]))
    assert version.variables == ["place", "thing"]


@pytest.mark.parametrize("changes, field, message", [
    ({"name": ""}, "name", "is required"),
    ({"body": "  "}, "body", "is required"),
    ({"body": "{{ product } on {{ background }}"}, "body", "template syntax error on line 1"),
    ({"body": "{{ product }}\non {{ colour }}"}, "body", "line 2: unknown variable 'colour'"),
    ({"negative_body": "no {{ mood }}"}, "negative_body", "unknown variable 'mood'"),
    ({"variables": "product, 2nd"}, "variables", "is not a variable name"),
    ({"variables": "product, product"}, "variables", "declared twice"),
    ({"default_params.model": "no-such-model"}, "default_params.model", "unknown model"),
    ({"default_params.sampler": "Bogus"}, "default_params.sampler", "Bogus"),
    ({"default_params.steps": "many"}, "default_params.steps", "must be a whole number"),
    ({"default_params.steps": "0"}, "default_params.steps", "between 1 and"),
    ({"default_params.cfg_scale": "hot"}, "default_params.cfg_scale", "must be a number"),
    ({"default_params.width": "65"}, "default_params.width", "multiple of 8"),
    ({"default_params.height": ""}, "default_params.height", "given together"),
])
def test_bad_input_is_shown_at_the_field_before_saving(client, farm, campaign, changes, field, message):
    before = count(farm, PromptTemplate), count(farm, TemplateVersion)
    form = _form(**changes)
    page = Forms(client).post(f"/campaigns/{campaign.id}/templates/new", form)
    assert page.status_code == 400
    assert message in (field_error(page.text, field) or ""), page.text[:3000]
    assert (count(farm, PromptTemplate), count(farm, TemplateVersion)) == before
    # What was typed is still there.
    if field != "name":
        assert input_value(page.text, "name") == form["name"]
    assert input_value(page.text, "rows[0].product") == "red shoe"


def test_a_name_taken_in_the_campaign(client, farm, manager, campaign):
    existing = make_template(farm, manager, campaign.id)
    page = Forms(client).post(f"/campaigns/{campaign.id}/templates/new", _form(name=existing.template_name))
    assert page.status_code == 400 and "exists already" in field_error(page.text, "name")


# -- preview --------------------------------------------------------------------------------------------

def test_preview_without_javascript_expands_rows_with_the_brand_style(client, farm, campaign):
    before = count(farm, PromptTemplate)
    page = Forms(client).post(f"/campaigns/{campaign.id}/templates/new", _form(**{
        "action": "preview", "rows[1].product": "", "rows[1].background": "",  # a blank row: not previewed
        "rows[2].product": "bag", "rows[2].background": "snow"}))
    assert page.status_code == 200
    assert "red shoe on sand, studio light" in page.text and "low quality, blurry" in page.text
    assert "bag on snow, studio light" in page.text
    assert "Every row expands." in page.text
    assert count(farm, PromptTemplate) == before  # nothing saved
    assert input_value(page.text, "rows[2].product") == "bag"


def test_preview_json_for_the_script(client, campaign):
    response = Forms(client).post(f"/campaigns/{campaign.id}/templates/preview", _form(**{
        "rows[3].product": "hat", "rows[3].background": "grass"}))
    assert response.status_code == 200
    assert response.json["ok"] is True and response.json["variables"] == ["product", "background"]
    assert [(r["index"], r["prompt"], r["negative_prompt"]) for r in response.json["rows"]] == [
        (0, "red shoe on sand, studio light", "low quality, blurry"),
        (1, "hat on grass, studio light", "low quality, blurry"),
    ]


def test_preview_reports_a_row_that_expands_to_nothing_at_that_row(client, campaign):
    form = _form(body="{{ product }}", variables="product, background", negative_body="",
                 **{"rows[0].product": "", "rows[0].background": "sand", "rows[1].product": "hat",
                    "rows[1].background": ""})
    answer = Forms(client).post(f"/campaigns/{campaign.id}/templates/preview", form).json
    assert answer["ok"] is False
    first, second = answer["rows"]
    assert first["prompt"] is None and first["errors"][0]["field"] == "rows[0]"
    assert "empty prompt" in first["errors"][0]["message"]
    assert second["prompt"] == "hat, studio light"
    page = Forms(client).post(f"/campaigns/{campaign.id}/templates/new", {**form, "action": "preview"})
    assert page.status_code == 200 and "empty prompt" in page.text and "Some rows do not expand" in page.text


@pytest.mark.parametrize("changes, field", [
    ({"body": "{% if %}"}, "body"),
    ({"body": "{{ nope }}"}, "body"),
    ({"negative_body": "{{ x"}, "negative_body"),
    ({"variables": "1x"}, "variables"),
])
def test_preview_of_bad_texts_names_the_field(client, campaign, changes, field):
    response = Forms(client).post(f"/campaigns/{campaign.id}/templates/preview", _form(**changes))
    assert response.status_code == 400
    assert response.json["error"]["field"] == field and response.json["error"]["message"]
    page = Forms(client).post(f"/campaigns/{campaign.id}/templates/new", _form(action="preview", **changes))
    assert page.status_code == 400 and field_error(page.text, field)


def test_preview_needs_the_csrf_token_and_a_visible_campaign(client, farm, campaign):
    assert client.post(f"/campaigns/{campaign.id}/templates/preview", data=_form()).status_code == 400
    owner = add_user(farm, "campaign_manager")
    hidden = make_campaign(farm, owner)
    response = Forms(client).post(f"/campaigns/{hidden.id}/templates/preview", _form())
    assert response.status_code == 404 and response.json["error"]["message"]


def test_add_row_without_javascript(client, campaign):
    page = Forms(client).post(f"/campaigns/{campaign.id}/templates/new", _form(action="add_row"))
    assert page.status_code == 200
    assert input_value(page.text, "rows[0].product") == "red shoe" and input_value(page.text, "rows[1].product") == ""


# -- edit: a new version ------------------------------------------------------------------------------------

def test_edit_is_prefilled_and_saves_a_new_version(client, farm, manager, campaign):
    first = make_template(farm, manager, campaign.id, negative_body="dull")
    page = client.get(f"/templates/{first.template_id}/edit")
    assert page.status_code == 200
    assert "{{ product }} on {{ background }}" in page.text and "dull" in page.text
    assert input_value(page.text, "variables") == "product, background"
    assert input_value(page.text, "default_params.steps") == "2"
    assert "saves version 2" in page.text

    response = Forms(client).post(f"/templates/{first.template_id}/edit", _form(
        name="ignored", variables="product, background, light", body="{{ product }} on {{ background }}, {{ light }}"))
    assert response.status_code == 302
    old, new = _versions(farm, first.template_id)
    assert old.body == "{{ product }} on {{ background }}" and old.negative_body == "dull"  # unchanged
    assert new.version == 2 and new.variables == ["product", "background", "light"]
    page = client.get(f"/templates/{first.template_id}")
    assert "Version 2" in page.text and "Version 1" in page.text and "latest" in page.text
    assert page.text.index("Version 2") < page.text.index("Version 1")
    with transaction(farm.session_factory) as session:
        assert session.get(PromptTemplate, first.template_id).name == first.template_name


def test_edit_with_an_unknown_variable_saves_nothing(client, farm, manager, campaign):
    first = make_template(farm, manager, campaign.id)
    page = Forms(client).post(f"/templates/{first.template_id}/edit", _form(body="{{ product }} by {{ artist }}"))
    assert page.status_code == 400
    assert "unknown variable 'artist'" in field_error(page.text, "body")
    assert "{{ product }} by {{ artist }}" in page.text
    assert len(_versions(farm, first.template_id)) == 1


def test_edit_preview_without_saving(client, farm, manager, campaign):
    first = make_template(farm, manager, campaign.id)
    page = Forms(client).post(f"/templates/{first.template_id}/edit", _form(action="preview", body="{{ product }}!"))
    assert page.status_code == 200 and "red shoe!, studio light" in page.text
    assert len(_versions(farm, first.template_id)) == 1


def test_templates_of_invisible_campaigns_are_not_found(client, farm, manager):
    owner = add_user(farm, "campaign_manager")
    hidden = make_template(farm, owner, make_campaign(farm, owner).id)
    forms = Forms(client)
    assert client.get(f"/templates/{hidden.template_id}").status_code == 404
    assert client.get(f"/templates/{hidden.template_id}/edit").status_code == 404
    assert forms.post(f"/templates/{hidden.template_id}/edit", _form()).status_code == 404
    assert client.get(f"/campaigns/{hidden.campaign_id}/templates/new").status_code == 404
    assert forms.post(f"/campaigns/{hidden.campaign_id}/templates/new", _form()).status_code == 404
    assert len(_versions(farm, hidden.template_id)) == 1


def test_reviewer_may_read_but_not_edit(client, farm):
    reviewer = login_as(client, "reviewer")
    owner = add_user(farm, "campaign_manager")
    version = make_template(farm, owner, make_campaign(farm, owner, members=[reviewer]).id)
    page = client.get(f"/templates/{version.template_id}")
    assert page.status_code == 200 and "Edit template" not in page.text and "New batch" not in page.text
    assert client.get(f"/templates/{version.template_id}/edit").status_code == 403
