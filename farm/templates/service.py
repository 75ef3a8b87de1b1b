"""Prompt templates: versioned text with variables in a sandboxed Jinja language.

`{{ product }} on {{ background }}` is expanded per variable row. The sandbox blocks attribute
tricks, and StrictUndefined turns a missing variable into an error instead of an empty string.
"""

from __future__ import annotations

from typing import Any, Mapping

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, meta
from jinja2.sandbox import SandboxedEnvironment, SecurityError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from farm.audit.log import record_event
from farm.db.models import PromptTemplate, TemplateVersion, User
from farm.errors import InvalidInput

_ENVIRONMENT = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


def template_variables(body: str, field: str = "body") -> set[str]:
    try:
        return meta.find_undeclared_variables(_ENVIRONMENT.parse(body))
    except TemplateSyntaxError as error:
        raise InvalidInput(field, f"template syntax error on line {error.lineno}: {error.message}") from None


def expand(body: str, variables: Mapping[str, Any], field: str = "body") -> str:
    """Fill a template with one variable row; a variable the template uses must be given."""
    for name in sorted(template_variables(body, field)):
        if name not in variables:
            raise InvalidInput(f"variables.{name}", "is required by the template")
    try:
        return _ENVIRONMENT.from_string(body).render(**variables).strip()
    except (UndefinedError, SecurityError) as error:
        raise InvalidInput(field, f"cannot expand template: {error}") from None


def create_template(
    session: Session,
    *,
    name: str,
    body: str,
    negative_body: str = "",
    default_params: dict[str, Any] | None = None,
    campaign_id: int | None = None,
    created_by: User | None = None,
) -> TemplateVersion:
    if not name.strip():
        raise InvalidInput("name", "is required")
    template = PromptTemplate(name=name.strip(), campaign_id=campaign_id)
    session.add(template)
    session.flush()
    return add_version(session, template, body=body, negative_body=negative_body,
                       default_params=default_params, created_by=created_by)


def add_version(
    session: Session,
    template: PromptTemplate,
    *,
    body: str,
    negative_body: str = "",
    default_params: dict[str, Any] | None = None,
    created_by: User | None = None,
) -> TemplateVersion:
    """Editing a template makes a new version; jobs keep pointing at the one they used."""
    if not body.strip():
        raise InvalidInput("body", "is required")
    template_variables(body, "body")
    template_variables(negative_body, "negative_body")
    latest = session.scalar(
        select(func.max(TemplateVersion.version)).where(TemplateVersion.template_id == template.id)
    )
    version = TemplateVersion(
        template=template, version=(latest or 0) + 1, body=body, negative_body=negative_body,
        default_params=default_params or {}, created_by_id=created_by.id if created_by else None,
    )
    session.add(version)
    session.flush()
    record_event(session, action="template.version_created", entity_type="template",
                 entity_id=template.id, actor=created_by,
                 after={"version": version.version, "body": body, "negative_body": negative_body})
    return version


def get_or_create_template(session: Session, *, name: str, body: str, negative_body: str = "") -> TemplateVersion:
    """The latest version of a campaign-less template, created on first use (used by the CLI)."""
    template = session.scalar(
        select(PromptTemplate).where(PromptTemplate.name == name, PromptTemplate.campaign_id.is_(None))
    )
    if template is None:
        return create_template(session, name=name, body=body, negative_body=negative_body)
    return template.versions[-1]
