"""Prompt templates: versioned text with variables in a sandboxed Jinja language.

`{{ product }} on {{ background }}` is expanded per variable row. The sandbox blocks attribute
tricks, and StrictUndefined turns a missing variable into an error instead of an empty string.

A template belongs to a campaign and declares its variables (the columns a variable row must
give); its body and negative prompt may use those and no others, which is checked when a version
is saved. Editing a template adds a version; jobs keep pointing at the version they used.
"""

from __future__ import annotations

import functools
import re
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Iterable, Mapping, Sequence

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, UndefinedError, meta, nodes
from jinja2.sandbox import SandboxedEnvironment, SecurityError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from farm.audit.log import record_event
from farm.campaigns.access import require_visible_campaign, visible_campaigns
from farm.db.models import Campaign, PromptTemplate, TemplateVersion, User
from farm.errors import InvalidInput, NotFound
from farm.models.registry import require_active_checkpoint
from farm.render.params import Txt2ImgParams, validate_txt2img

_ENVIRONMENT = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)

# Variable names are the CSV columns and the form's table headings: plain ASCII identifiers.
VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
# Words Jinja reads as constants or operators, never as a variable.
_JINJA_RESERVED = frozenset({"true", "false", "none", "True", "False", "None", "and", "or", "not", "in", "is",
                             "if", "else", "loop", "self", "super", "caller", "varargs", "kwargs"})
MAX_VARIABLES = 50
MAX_TEMPLATE_CHARS = 10_000
# Parameters a template version may set by default (and a batch may override).
DEFAULT_PARAM_NAMES = ("model", "sampler", "steps", "cfg_scale", "width", "height")
# Stand-ins for parameters a template leaves to the job, so its own values can be validated alone.
_VALIDATION_BASE = dict(prompt="", negative_prompt="", seed=0, steps=20, cfg_scale=7.0, width=512, height=512,
                        sampler="Euler a")


def template_variables(body: str, field: str = "body") -> set[str]:
    try:
        return set(_compiled(body)[1])
    except TemplateSyntaxError as error:
        raise InvalidInput(field, f"template syntax error on line {error.lineno}: {error.message}") from None


@functools.lru_cache(maxsize=256)
def _compiled(body: str) -> tuple[Template, frozenset[str]]:
    """A template body compiled once, with the variables it uses. A job expands the same body
    for every row, and compiling costs more than rendering (about a millisecond each)."""
    return _ENVIRONMENT.from_string(body), frozenset(meta.find_undeclared_variables(_ENVIRONMENT.parse(body)))


def expand(body: str, variables: Mapping[str, Any], field: str = "body") -> str:
    """Fill a template with one variable row; a variable the template uses must be given."""
    for name in sorted(template_variables(body, field)):
        if name not in variables:
            raise InvalidInput(f"variables.{name}", "is required by the template")
    try:
        return _compiled(body)[0].render(**variables).strip()
    except (UndefinedError, SecurityError) as error:
        raise InvalidInput(field, f"cannot expand template: {error}") from None


def with_style(text: str, style: str) -> str:
    """A prompt with the campaign's brand style (suffix or negative) appended."""
    return f"{text}, {style}" if text and style else text or style


# -- checks made when a version is saved ------------------------------------------------------

def check_variable_names(variables: object, field: str = "variables") -> list[str]:
    """The declared variable names, validated: identifiers, unique, at most MAX_VARIABLES."""
    if isinstance(variables, (str, bytes)) or not isinstance(variables, Iterable):
        raise InvalidInput(field, "must be a list of variable names")
    names: list[str] = []
    for number, name in enumerate(variables):
        where = f"{field}[{number}]"
        if not isinstance(name, str) or not VARIABLE_NAME.fullmatch(name.strip()):
            raise InvalidInput(where, f"{name!r} is not a variable name: use letters, digits and '_', "
                                      "not starting with a digit (at most 64)")
        name = name.strip()
        if name in _JINJA_RESERVED:
            raise InvalidInput(where, f"'{name}' is a reserved word of the template language")
        if name in names:
            raise InvalidInput(where, f"'{name}' is declared twice")
        names.append(name)
    if len(names) > MAX_VARIABLES:
        raise InvalidInput(field, f"at most {MAX_VARIABLES} variables, got {len(names)}")
    return names


def check_template_text(text: object, declared: Sequence[str], field: str) -> set[str]:
    """The variables `text` uses; InvalidInput(field) for a syntax error or an undeclared variable,
    with the line it is on."""
    if not isinstance(text, str):
        raise InvalidInput(field, "must be text")
    if len(text) > MAX_TEMPLATE_CHARS:
        raise InvalidInput(field, f"is longer than {MAX_TEMPLATE_CHARS} characters")
    try:
        tree = _ENVIRONMENT.parse(text)
    except TemplateSyntaxError as error:
        raise InvalidInput(field, f"template syntax error on line {error.lineno}: {error.message}") from None
    used = meta.find_undeclared_variables(tree)
    unknown = used - set(declared)
    if unknown:
        first = min(((_first_use(tree, name), name) for name in unknown))
        lineno, name = first
        known = ", ".join(declared) or "none declared"
        raise InvalidInput(field, f"line {lineno}: unknown variable '{name}' (declared: {known})")
    return used


def _first_use(tree: nodes.Template, name: str) -> int:
    return min((node.lineno for node in tree.find_all(nodes.Name) if node.name == name and node.ctx == "load"),
               default=1)


def check_default_params(session: Session, params: object, field: str = "default_params") -> dict[str, Any]:
    """Default generation parameters, validated as a render's would be; InvalidInput naming
    e.g. "default_params.steps". The model must be an active checkpoint."""
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise InvalidInput(field, "must be a mapping of parameter names to values")
    unknown = sorted(set(params) - set(DEFAULT_PARAM_NAMES))
    if unknown:
        raise InvalidInput(f"{field}.{unknown[0]}", f"is not a template parameter ({', '.join(DEFAULT_PARAM_NAMES)})")
    checked = dict(params)
    if "model" in checked:
        checked["model"] = require_active_checkpoint(session, checked["model"], field=f"{field}.model").name
    if "cfg_scale" in checked and isinstance(checked["cfg_scale"], int) and not isinstance(checked["cfg_scale"], bool):
        checked["cfg_scale"] = float(checked["cfg_scale"])
    generation = {k: v for k, v in checked.items() if k != "model"}
    try:
        validate_txt2img(Txt2ImgParams(**{**_VALIDATION_BASE, **generation}))
    except InvalidInput as error:
        raise InvalidInput(f"{field}.{error.field}", error.message) from None
    if ("width" in checked) != ("height" in checked):
        raise InvalidInput(f"{field}.{'height' if 'width' in checked else 'width'}",
                           "width and height are given together")
    return checked


# -- writing versions ---------------------------------------------------------------------------

def create_template(
    session: Session,
    *,
    name: str,
    body: str,
    negative_body: str = "",
    variables: Sequence[str] | None = None,
    default_params: dict[str, Any] | None = None,
    campaign_id: int | None = None,
    created_by: User | None = None,
) -> TemplateVersion:
    """A new template and its first version. `variables=None` declares what the texts use."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("name", "is required")
    if len(name.strip()) > 200:
        raise InvalidInput("name", "is longer than 200 characters")
    existing = session.scalar(select(PromptTemplate.id).where(
        PromptTemplate.name == name.strip(),
        PromptTemplate.campaign_id.is_(None) if campaign_id is None else PromptTemplate.campaign_id == campaign_id))
    if existing:
        raise InvalidInput("name", f"a template named '{name.strip()}' exists already")
    # Checked before the template row is written, so a bad version leaves nothing behind.
    _checked_version_fields(session, body, negative_body, variables, default_params)
    template = PromptTemplate(name=name.strip(), campaign_id=campaign_id)
    session.add(template)
    session.flush()
    return add_version(session, template, body=body, negative_body=negative_body, variables=variables,
                       default_params=default_params, created_by=created_by)


def _checked_texts(body, negative_body, variables) -> tuple[str, list[str]]:
    """The negative text ("" if none) and the declared variables, once both texts are valid."""
    if not isinstance(body, str) or not body.strip():
        raise InvalidInput("body", "is required")
    negative_body = "" if negative_body is None else negative_body
    if variables is None:
        # Not declared (the CLI's direct prompt, older callers): declare what the texts use.
        declared = sorted(template_variables(body, "body") | template_variables(negative_body, "negative_body"))
    else:
        declared = check_variable_names(variables)
    check_template_text(body, declared, "body")
    check_template_text(negative_body, declared, "negative_body")
    return negative_body, declared


def _checked_version_fields(session, body, negative_body, variables, default_params):
    negative_body, declared = _checked_texts(body, negative_body, variables)
    return negative_body, declared, check_default_params(session, default_params)


def add_version(
    session: Session,
    template: PromptTemplate,
    *,
    body: str,
    negative_body: str = "",
    variables: Sequence[str] | None = None,
    default_params: dict[str, Any] | None = None,
    created_by: User | None = None,
) -> TemplateVersion:
    """Editing a template makes a new version; jobs keep pointing at the one they used."""
    negative_body, declared, params = _checked_version_fields(session, body, negative_body, variables, default_params)
    previous = session.scalar(select(TemplateVersion).where(TemplateVersion.template_id == template.id)
                              .order_by(TemplateVersion.version.desc()).limit(1))
    version = TemplateVersion(
        template=template, version=(previous.version if previous else 0) + 1, body=body,
        negative_body=negative_body, variables=declared, default_params=params,
        created_by_id=created_by.id if created_by else None,
    )
    session.add(version)
    session.flush()
    record_event(session, action="template.version_created", entity_type="template",
                 entity_id=template.id, actor=created_by,
                 before=_version_audit(previous) if previous else None, after=_version_audit(version))
    return version


def _version_audit(version: TemplateVersion) -> dict[str, Any]:
    return {"version": version.version, "body": version.body, "negative_body": version.negative_body,
            "variables": list(version.variables), "default_params": dict(version.default_params)}


def get_or_create_template(session: Session, *, name: str, body: str, negative_body: str = "") -> TemplateVersion:
    """The latest version of a campaign-less template, created on first use (used by the CLI)."""
    latest = session.scalar(
        select(TemplateVersion).join(PromptTemplate)
        .where(PromptTemplate.name == name, PromptTemplate.campaign_id.is_(None))
        .order_by(TemplateVersion.version.desc()).limit(1)
    )
    return latest or create_template(session, name=name, body=body, negative_body=negative_body)


# -- what the dashboard and the API call ----------------------------------------------------------

@dataclass(frozen=True)
class TemplateVersionInfo:
    id: int
    template_id: int
    template_name: str
    campaign_id: int | None
    version: int
    body: str
    negative_body: str
    variables: list[str]
    default_params: dict[str, Any]
    created_by_id: int | None
    created_at: datetime

    @classmethod
    def of(cls, version: TemplateVersion) -> "TemplateVersionInfo":
        return cls(id=version.id, template_id=version.template_id, template_name=version.template.name,
                   campaign_id=version.template.campaign_id, version=version.version, body=version.body,
                   negative_body=version.negative_body, variables=declared_variables(version),
                   default_params=dict(version.default_params), created_by_id=version.created_by_id,
                   created_at=version.created_at)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "created_at": self.created_at.isoformat()}


@dataclass(frozen=True)
class TemplateInfo:
    id: int
    campaign_id: int | None
    name: str
    latest_version: int
    latest_version_id: int
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "created_at": self.created_at.isoformat()}


def declared_variables(version: TemplateVersion) -> list[str]:
    """What a row must give. Versions saved before variables were declared use what their texts use."""
    if version.variables:
        return list(version.variables)
    return sorted(template_variables(version.body) | template_variables(version.negative_body, "negative_body"))


def create_campaign_template(
    session: Session, user: User, campaign_id: int, *, name: str, body: str, negative_body: str = "",
    variables: Sequence[str] | None = None, default_params: dict[str, Any] | None = None,
) -> TemplateVersionInfo:
    """A new template of a campaign the user can see, with its first version."""
    campaign = require_visible_campaign(session, user, campaign_id)
    version = create_template(session, name=name, body=body, negative_body=negative_body, variables=variables,
                              default_params=default_params, campaign_id=campaign.id, created_by=user)
    return TemplateVersionInfo.of(version)


def _visible_template(session: Session, user: User, template_id: int) -> PromptTemplate:
    template = session.scalar(select(PromptTemplate).where(
        PromptTemplate.id == template_id, PromptTemplate.campaign_id.is_not(None),
        visible_campaigns(user, PromptTemplate.campaign_id)))
    if template is None:
        raise NotFound("template", template_id)
    return template


def edit_template(
    session: Session, user: User, template_id: int, *, body: str, negative_body: str = "",
    variables: Sequence[str] | None = None, default_params: dict[str, Any] | None = None,
) -> TemplateVersionInfo:
    """Save an edit as the template's next version (earlier versions and their jobs are untouched)."""
    template = _visible_template(session, user, template_id)
    version = add_version(session, template, body=body, negative_body=negative_body, variables=variables,
                          default_params=default_params, created_by=user)
    return TemplateVersionInfo.of(version)


def list_templates(session: Session, user: User, campaign_id: int) -> list[TemplateInfo]:
    """The campaign's templates by name, each with its latest version."""
    require_visible_campaign(session, user, campaign_id)
    latest = (select(TemplateVersion.template_id, func.max(TemplateVersion.version).label("version"))
              .group_by(TemplateVersion.template_id).subquery())
    rows = session.execute(
        select(PromptTemplate, TemplateVersion.id, TemplateVersion.version)
        .join(latest, latest.c.template_id == PromptTemplate.id)
        .join(TemplateVersion, (TemplateVersion.template_id == PromptTemplate.id)
              & (TemplateVersion.version == latest.c.version))
        .where(PromptTemplate.campaign_id == campaign_id)
        .order_by(PromptTemplate.name)
    ).all()
    return [TemplateInfo(id=t.id, campaign_id=t.campaign_id, name=t.name, latest_version=number,
                         latest_version_id=version_id, created_at=t.created_at)
            for t, version_id, number in rows]


def list_template_versions(session: Session, user: User, template_id: int) -> list[TemplateVersionInfo]:
    """Every version of a template, oldest first."""
    template = _visible_template(session, user, template_id)
    return [TemplateVersionInfo.of(v) for v in template.versions]


def visible_template_version(session: Session, user: User, version_id: int) -> TemplateVersion:
    """The version, if it belongs to a campaign the user can see; NotFound otherwise."""
    version = session.scalar(
        select(TemplateVersion).join(PromptTemplate, TemplateVersion.template_id == PromptTemplate.id)
        .where(TemplateVersion.id == version_id, PromptTemplate.campaign_id.is_not(None),
               visible_campaigns(user, PromptTemplate.campaign_id)))
    if version is None:
        raise NotFound("template version", version_id)
    return version


def get_template_version(session: Session, user: User, version_id: int) -> TemplateVersionInfo:
    return TemplateVersionInfo.of(visible_template_version(session, user, version_id))


# -- expansion per row, and the preview -------------------------------------------------------------

@dataclass(frozen=True)
class FieldError:
    field: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class ExpandedRow:
    index: int
    prompt: str | None
    negative_prompt: str | None
    errors: list[FieldError]

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "prompt": self.prompt, "negative_prompt": self.negative_prompt,
                "errors": [e.to_dict() for e in self.errors]}


@dataclass(frozen=True)
class Preview:
    rows: list[ExpandedRow]

    @property
    def errors(self) -> list[FieldError]:
        return [error for row in self.rows for error in row.errors]

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "rows": [row.to_dict() for row in self.rows]}


class RowExpander:
    """A template's texts parsed once, expanded for one variable row at a time with the
    campaign's style; every problem names the row and the variable ("rows[2].background")."""

    def __init__(self, body: str, negative_body: str, variables: Sequence[str], campaign: Campaign):
        self.variables = list(variables)
        self._body = _ENVIRONMENT.from_string(body)
        self._negative = _ENVIRONMENT.from_string(negative_body or "")
        self._style_suffix = campaign.style_suffix or ""
        self._style_negative = campaign.style_negative or ""

    @classmethod
    def for_version(cls, version: TemplateVersion, campaign: Campaign) -> "RowExpander":
        return cls(version.body, version.negative_body, declared_variables(version), campaign)

    def row_errors(self, index: int, row: object) -> list[FieldError]:
        where = f"rows[{index}]"
        if not isinstance(row, Mapping):
            return [FieldError(where, "must be a mapping of variable names to values")]
        errors = []
        for name in self.variables:
            value = row.get(name)
            if name not in row or value is None:
                errors.append(FieldError(f"{where}.{name}", "is required by the template"))
            elif not isinstance(value, (str, int, float)) or isinstance(value, bool):
                errors.append(FieldError(f"{where}.{name}", f"must be text, got {type(value).__name__}"))
        return errors

    def expand(self, index: int, row: Mapping[str, Any]) -> tuple[str, str]:
        """(prompt, negative prompt) for a row; InvalidInput naming the row's field if it fails."""
        errors = self.row_errors(index, row)
        if errors:
            raise InvalidInput(errors[0].field, errors[0].message)
        values = {name: str(row[name]) for name in self.variables}
        try:
            prompt = self._body.render(**values).strip()
            negative = self._negative.render(**values).strip()
        except (UndefinedError, SecurityError, TypeError, ValueError) as error:
            raise InvalidInput(f"rows[{index}]", f"cannot expand the template: {error}") from None
        if not prompt:
            raise InvalidInput(f"rows[{index}]", "the template expands to an empty prompt for this row")
        return with_style(prompt, self._style_suffix), with_style(negative, self._style_negative)

    def preview(self, rows: Sequence[object]) -> Preview:
        expanded = []
        for index, row in enumerate(rows):
            try:
                prompt, negative = self.expand(index, row)
            except InvalidInput as error:
                errors = self.row_errors(index, row) or [FieldError(error.field, error.message)]
                expanded.append(ExpandedRow(index, None, None, errors))
            else:
                expanded.append(ExpandedRow(index, prompt, negative, []))
        return Preview(expanded)


def preview(
    session: Session, user: User, campaign_id: int, *, rows: Sequence[object],
    template_version_id: int | None = None, body: str | None = None, negative_body: str = "",
    variables: Sequence[str] | None = None,
) -> Preview:
    """Expand a saved version (`template_version_id`), or unsaved texts (`body`, `negative_body`,
    `variables`), for each row, with the campaign's brand style, before anything is submitted.

    Problems with the texts raise InvalidInput ("body", "negative_body", "variables[1]"), as saving
    them would; problems with a row are reported on that row ("rows[2].background").
    """
    campaign = require_visible_campaign(session, user, campaign_id)
    if isinstance(rows, (str, bytes)) or not isinstance(rows, Sequence):
        raise InvalidInput("rows", "must be a list of variable rows")
    if template_version_id is not None:
        version = visible_template_version(session, user, template_version_id)
        if version.template.campaign_id != campaign.id:
            raise InvalidInput("template_version_id", "belongs to another campaign")
        expander = RowExpander.for_version(version, campaign)
    else:
        negative_body, declared = _checked_texts(body, negative_body, variables)
        expander = RowExpander(body, negative_body, declared, campaign)
    return expander.preview(rows)
