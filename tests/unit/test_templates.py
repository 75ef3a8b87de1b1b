"""Templates: expansion, declared variables, versions, default parameters and the preview."""

import pytest
from sqlalchemy import func, select

from farm.accounts.service import create_user
from farm.audit.log import verify_chain
from farm.campaigns.service import create_campaign_as
from farm.db.models import AuditEvent, PromptTemplate, TemplateVersion
from farm.db.session import transaction
from farm.errors import InvalidInput, NotFound
from farm.templates.service import (
    create_campaign_template, edit_template, expand, get_template_version, list_template_versions, list_templates,
    preview, template_variables,
)


def test_expand_fills_variables():
    assert expand("{{ product }} on {{ background }}", {"product": "a red shoe", "background": "sand"}) \
        == "a red shoe on sand"


def test_template_variables_lists_what_a_row_must_give():
    assert template_variables("{{ product }} on {{ background }}") == {"product", "background"}


def test_missing_variable_names_it():
    with pytest.raises(InvalidInput) as caught:
        expand("{{ product }} on {{ background }}", {"product": "shoe"})
    assert caught.value.field == "variables.background"


def test_syntax_error_names_the_field():
    with pytest.raises(InvalidInput) as caught:
        expand("{{ product ", {"product": "x"}, field="prompt")
    assert caught.value.field == "prompt"
    assert "syntax" in caught.value.message


def test_sandbox_blocks_reaching_python_internals():
    with pytest.raises(InvalidInput):
        expand("{{ product.__class__.__mro__[1].__subclasses__() }}", {"product": "x"})


# -- campaign templates: declared variables, versions, default parameters, preview --------------

BODY = "{{ product }} on {{ background }}"


@pytest.fixture
def campaign(embedded_farm):
    """(manager, outsider, campaign id) with the campaign's brand style set."""
    with transaction(embedded_farm.session_factory) as session:
        manager = create_user(session, name="ana", role="campaign_manager")
        outsider = create_user(session, name="bo", role="campaign_manager")
        campaign_id = create_campaign_as(session, manager, name="Spring", brand="Acme", style_suffix="studio light",
                                         style_negative="blurry").id
    return manager, outsider, campaign_id


def _new(session, manager, campaign_id, **fields):
    values = {"name": "hero", "body": BODY, "negative_body": "{{ avoid }}",
              "variables": ["product", "background", "avoid"], **fields}
    return create_campaign_template(session, manager, campaign_id, **values)


def test_versions_declare_variables_and_editing_adds_a_version(embedded_farm, campaign):
    manager, _, campaign_id = campaign
    factory = embedded_farm.session_factory
    with transaction(factory) as session:
        first = _new(session, manager, campaign_id, default_params={"steps": 12, "cfg_scale": 6, "model": "tiny-sd"})
        assert (first.version, first.variables, first.campaign_id) == (1, ["product", "background", "avoid"], campaign_id)
        assert first.default_params == {"steps": 12, "cfg_scale": 6.0, "model": "tiny-sd"}
    with transaction(factory) as session:
        second = edit_template(session, manager, first.template_id, body="{{ product }}, close-up",
                               variables=["product"], default_params={"sampler": "DPM++ 2M Karras"})
        assert (second.version, second.variables, second.negative_body) == (2, ["product"], "")
        assert [v.version for v in list_template_versions(session, manager, first.template_id)] == [1, 2]
        assert get_template_version(session, manager, first.id).body == BODY  # the old version is kept as it was
        [listed] = list_templates(session, manager, campaign_id)
        assert (listed.name, listed.latest_version, listed.latest_version_id) == ("hero", 2, second.id)
        assert listed.to_dict()["created_at"]
        events = session.scalars(select(AuditEvent).where(AuditEvent.action == "template.version_created")
                                 .order_by(AuditEvent.id)).all()
        assert events[-1].before["version"] == 1 and events[-1].after["version"] == 2
        assert events[-1].after["variables"] == ["product"] and events[-1].actor_id == manager.id
        assert verify_chain(session) == []


@pytest.mark.parametrize("fields, field, fragment", [
    ({"body": "{{ product }} on {{ backgroud }}"}, "body", "line 1: unknown variable 'backgroud'"),
    ({"body": "{{ product }}\non {{ background }}\n{{ colour }}"}, "body", "line 3: unknown variable 'colour'"),
    ({"body": "{{ product }}\n{% if background %}on {{ background }}"}, "body", "line 2"),
    ({"body": "{{ product "}, "body", "syntax error on line 1"),
    ({"body": "   "}, "body", "required"),
    ({"body": "x" * 10_001}, "body", "longer"),
    ({"negative_body": "{{ avoid }}\n{{ nsfw }}"}, "negative_body", "line 2: unknown variable 'nsfw'"),
    ({"negative_body": "{% for %}"}, "negative_body", "syntax error on line 1"),
    ({"variables": ["product", "back ground"]}, "variables[1]", "not a variable name"),
    ({"variables": ["product", "2nd"]}, "variables[1]", "not a variable name"),
    ({"variables": ["product", "product"]}, "variables[1]", "declared twice"),
    ({"variables": ["true"]}, "variables[0]", "reserved"),
    ({"variables": "product,background"}, "variables", "list"),
    ({"variables": [f"v{i}" for i in range(51)]}, "variables", "at most 50"),
    ({"name": ""}, "name", "required"),
    ({"default_params": {"steps": 0}}, "default_params.steps", "between"),
    ({"default_params": {"steps": "20"}}, "default_params.steps", "whole number"),
    ({"default_params": {"cfg_scale": 31}}, "default_params.cfg_scale", "between"),
    ({"default_params": {"sampler": "Euler z"}}, "default_params.sampler", "unknown sampler"),
    ({"default_params": {"model": "nope"}}, "default_params.model", "unknown model"),
    ({"default_params": {"model": "lanczos"}}, "default_params.model", "not a checkpoint"),
    ({"default_params": {"width": 100, "height": 64}}, "default_params.width", "multiple of 8"),
    ({"default_params": {"width": 512}}, "default_params.height", "together"),
    ({"default_params": {"strength": 0.5}}, "default_params.strength", "not a template parameter"),
    ({"default_params": [("steps", 3)]}, "default_params", "mapping"),
])
def test_bad_templates_are_named_with_line_and_write_nothing(embedded_farm, campaign, fields, field, fragment):
    manager, _, campaign_id = campaign
    factory = embedded_farm.session_factory
    with pytest.raises(InvalidInput) as caught:
        with transaction(factory) as session:
            _new(session, manager, campaign_id, **fields)
    assert caught.value.field == field
    assert fragment in caught.value.message
    with transaction(factory) as session:
        assert session.scalar(select(func.count(PromptTemplate.id))) == 0
        assert session.scalar(select(func.count(TemplateVersion.id))) == 0


def test_a_name_is_unique_within_a_campaign(embedded_farm, campaign):
    manager, _, campaign_id = campaign
    with transaction(embedded_farm.session_factory) as session:
        _new(session, manager, campaign_id)
        with pytest.raises(InvalidInput) as caught:
            _new(session, manager, campaign_id)
    assert caught.value.field == "name"


def test_templates_of_an_invisible_campaign_are_not_found(embedded_farm, campaign):
    manager, outsider, campaign_id = campaign
    with transaction(embedded_farm.session_factory) as session:
        version = _new(session, manager, campaign_id)
        for action in (lambda: _new(session, outsider, campaign_id, name="mine"),
                       lambda: list_templates(session, outsider, campaign_id),
                       lambda: preview(session, outsider, campaign_id, rows=[], body="x")):
            with pytest.raises(NotFound):
                action()
        for action in (lambda: edit_template(session, outsider, version.template_id, body="x"),
                       lambda: list_template_versions(session, outsider, version.template_id),
                       lambda: get_template_version(session, outsider, version.id)):
            with pytest.raises(NotFound) as caught:
                action()
            assert caught.value.what in ("template", "template version")


def test_preview_expands_rows_with_the_brand_style_and_names_row_problems(embedded_farm, campaign):
    manager, _, campaign_id = campaign
    with transaction(embedded_farm.session_factory) as session:
        version = _new(session, manager, campaign_id)
        rows = [
            {"product": "red shoe", "background": "sand", "avoid": "text"},
            {"product": "bag", "background": "snow", "avoid": "", "notes": "ignored"},
            {"product": "hat", "avoid": ""},
            "not a row",
            {"product": "cap", "background": ["a"], "avoid": ""},
        ]
        result = preview(session, manager, campaign_id, template_version_id=version.id, rows=rows)
    assert not result.ok
    assert [(r.prompt, r.negative_prompt) for r in result.rows[:2]] == [
        ("red shoe on sand, studio light", "text, blurry"), ("bag on snow, studio light", "blurry")]
    assert [(e.field, e.message) for e in result.errors] == [
        ("rows[2].background", "is required by the template"),
        ("rows[3]", "must be a mapping of variable names to values"),
        ("rows[4].background", "must be text, got list"),
    ]
    as_json = result.to_dict()
    assert as_json["rows"][2] == {"index": 2, "prompt": None, "negative_prompt": None,
                                  "errors": [{"field": "rows[2].background", "message": "is required by the template"}]}


def test_preview_of_unsaved_text_checks_it_as_saving_would(embedded_farm, campaign):
    manager, _, campaign_id = campaign
    with transaction(embedded_farm.session_factory) as session:
        result = preview(session, manager, campaign_id, body="{{ product | upper }}{% if extra %}, {{ extra }}{% endif %}",
                         variables=["product", "extra"], rows=[{"product": "shoe", "extra": ""},
                                                                {"product": " ", "extra": ""}])
        assert result.rows[0].prompt == "SHOE, studio light"
        assert [(e.field, e.message) for e in result.errors] == [
            ("rows[1]", "the template expands to an empty prompt for this row")]
        with pytest.raises(InvalidInput) as caught:
            preview(session, manager, campaign_id, body="{{ product }} {{ colour }}", variables=["product"], rows=[])
        assert caught.value.field == "body" and "line 1: unknown variable 'colour'" in caught.value.message
        other = create_campaign_as(session, manager, name="Other", brand="Acme").id
        version = _new(session, manager, other)
        with pytest.raises(InvalidInput) as caught:
            preview(session, manager, campaign_id, template_version_id=version.id, rows=[])
        assert caught.value.field == "template_version_id"
