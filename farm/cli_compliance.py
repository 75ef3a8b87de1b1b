"""`farm licenses`, `farm models` and `farm audit`: the license registry, the model registry and
the audit log from the command line (farm.cli adds these groups to `farm`).

Who makes a change: `--as USER`, or else the operating-system login name, must be an enabled farm
user with the admin role (`farm users create NAME --role admin`); the audit log records that user.
A command run by someone the farm does not know is refused before anything is written: the log
must name a person, not a shell account.
"""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path

import click

from farm.errors import InvalidInput, NotFound

EXIT_AUDIT_FAILED = 1
ADMIN_ROLES = ("admin",)


def _ctx():
    from farm.cli import _context
    from farm.context import prepare_database

    ctx = _context()
    if ctx.is_embedded:
        prepare_database(ctx)
    return ctx


def _actor(session, as_user: str | None):
    """The farm user a change is made as (see the module docstring); InvalidInput("as") otherwise."""
    from farm.accounts.service import get_user_by_name

    name = as_user or getpass.getuser()
    origin = "--as" if as_user else f"your login name '{name}' (no --as given)"
    try:
        user = get_user_by_name(session, name)
    except NotFound:
        raise InvalidInput("as", f"there is no farm user named '{name}' ({origin}); give --as USER, a farm "
                                 "admin, so the audit log can name who made the change") from None
    if user.disabled:
        raise InvalidInput("as", f"farm user '{name}' is disabled")
    if user.role not in ADMIN_ROLES:
        raise InvalidInput("as", f"farm user '{name}' is {user.role}; licenses and models are changed by admins")
    return user


def _echo_json(data) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def _renamed(error: InvalidInput, field: str, new: str) -> InvalidInput:
    return InvalidInput(new, error.message) if error.field == field else error


as_option = click.option("--as", "as_user", default=None, metavar="USER",
                         help="The farm admin making the change (default: your login name).")


# -- farm licenses --------------------------------------------------------------------------------------

@click.group()
def licenses() -> None:
    """The license registry: terms the policy checks, attribution and restrictions assets carry."""


def _print_license(info) -> None:
    click.echo(f"{info.identifier}  {info.name}")
    click.echo(f"  commercial use: {info.commercial_use}"
               + (f" (free under USD {info.revenue_cap_usd:,} annual revenue)" if info.revenue_cap_usd else ""))
    click.echo(f"  attribution: {info.attribution_text if info.attribution_required else 'not required'}")
    click.echo(f"  derivatives inherit it: {'yes' if info.derivatives_inherit else 'no'}")
    if info.url:
        click.echo(f"  url: {info.url}")
    if info.text_sha256:
        click.echo(f"  text sha256: {info.text_sha256}")
    for restriction in info.use_restrictions:
        click.echo(f"  - {restriction}")
    click.echo(f"  models: {info.models}")


@licenses.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def licenses_list(as_json: bool) -> None:
    """Every license: identifier, commercial use, attribution, models under it."""
    from farm.db.session import transaction
    from farm.licenses.admin import list_licenses

    with transaction(_ctx().session_factory) as session:
        rows = list_licenses(session)
    if as_json:
        _echo_json([row.to_dict() for row in rows])
        return
    click.echo(f"{'IDENTIFIER':<48} {'COMMERCIAL USE':<26} {'ATTRIBUTION':<12} MODELS")
    for row in rows:
        click.echo(f"{row.identifier:<48} {row.commercial_use:<26} {'yes' if row.attribution_required else '-':<12} "
                   f"{row.models}")


@licenses.command("show")
@click.argument("identifier")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def licenses_show(identifier: str, as_json: bool) -> None:
    """One license's terms."""
    from farm.db.session import transaction
    from farm.licenses.admin import show_license

    with transaction(_ctx().session_factory) as session:
        info = show_license(session, identifier)
    _echo_json(info.to_dict()) if as_json else _print_license(info)


def _license_fields(name, url, commercial_use, revenue_cap, attribution, no_attribution, restrictions,
                    clear_restrictions, derivatives_inherit, text_file) -> dict:
    from farm.licenses.admin import text_sha256_of

    fields: dict = {}
    if name is not None:
        fields["name"] = name
    if url is not None:
        fields["url"] = url
    if commercial_use is not None:
        fields["commercial_use"] = commercial_use
    if revenue_cap is not None:
        fields["revenue_cap_usd"] = None if revenue_cap.lower() == "none" else revenue_cap
    if attribution is not None and no_attribution:
        raise InvalidInput("attribution_text", "give --attribution or --no-attribution, not both")
    if attribution is not None:
        fields.update(attribution_required=True, attribution_text=attribution)
    if no_attribution:
        fields.update(attribution_required=False, attribution_text=None)
    if restrictions and clear_restrictions:
        raise InvalidInput("use_restrictions", "give --restriction or --clear-restrictions, not both")
    if restrictions:
        fields["use_restrictions"] = list(restrictions)
    if clear_restrictions:
        fields["use_restrictions"] = []
    if derivatives_inherit is not None:
        fields["derivatives_inherit"] = derivatives_inherit
    if text_file is not None:
        fields["text_sha256"] = text_sha256_of(text_file)
    return fields


def _license_options(command):
    options = [
        click.option("--name", default=None, help="The license's name."),
        click.option("--url", default=None, help="Where its text is."),
        click.option("--commercial-use", default=None,
                     type=click.Choice(["allowed", "revenue_capped", "forbidden", "separate_license_required"]),
                     help="What it says of commercial use."),
        click.option("--revenue-cap", default=None, metavar="USD",
                     help="Annual revenue under which commercial use is free (revenue_capped; 'none' clears)."),
        click.option("--attribution", default=None, metavar="TEXT", help="Attribution required: the text to show."),
        click.option("--no-attribution", is_flag=True, help="No attribution required."),
        click.option("--restriction", "restrictions", multiple=True, metavar="TEXT",
                     help="A use restriction to pass on (repeat; replaces the list)."),
        click.option("--clear-restrictions", is_flag=True, help="No use restrictions."),
        click.option("--derivatives-inherit/--no-derivatives-inherit", default=None,
                     help="Whether LoRAs, fine-tunes and merges carry its terms."),
        click.option("--text", "text_file", default=None, type=click.Path(dir_okay=False, path_type=Path),
                     help="The license text file: its sha256 is recorded."),
        as_option,
    ]
    for option in reversed(options):
        command = option(command)
    return command


@licenses.command("add")
@click.argument("identifier")
@_license_options
def licenses_add(identifier, name, url, commercial_use, revenue_cap, attribution, no_attribution, restrictions,
                 clear_restrictions, derivatives_inherit, text_file, as_user) -> None:
    """Add license IDENTIFIER (SPDX identifier, or LicenseRef-...)."""
    from farm.db.session import transaction
    from farm.licenses.admin import create_license

    fields = _license_fields(name, url, commercial_use, revenue_cap, attribution, no_attribution, restrictions,
                             clear_restrictions, derivatives_inherit, text_file)
    with transaction(_ctx().session_factory) as session:
        info = create_license(session, _actor(session, as_user), {"identifier": identifier, **fields})
    click.echo(f"added license {info.identifier}")


@licenses.command("edit")
@click.argument("identifier")
@_license_options
@click.option("--reason", default=None, help="Why (kept in the audit log).")
def licenses_edit(identifier, name, url, commercial_use, revenue_cap, attribution, no_attribution, restrictions,
                  clear_restrictions, derivatives_inherit, text_file, as_user, reason) -> None:
    """Change license IDENTIFIER's terms; models under it are re-checked, their assets flagged."""
    from farm.db.session import transaction
    from farm.licenses.admin import update_license

    fields = _license_fields(name, url, commercial_use, revenue_cap, attribution, no_attribution, restrictions,
                             clear_restrictions, derivatives_inherit, text_file)
    if not fields:
        raise InvalidInput("identifier", "nothing to change: give at least one option (see --help)")
    with transaction(_ctx().session_factory) as session:
        info = update_license(session, _actor(session, as_user), identifier, fields, reason=reason)
    click.echo(f"license {info.identifier} updated")


# -- farm models ----------------------------------------------------------------------------------------

@click.group()
def models() -> None:
    """The model registry: checkpoints, LoRAs, VAEs and upscalers, their hashes and licenses."""


def _print_change(change) -> None:
    model = change.model
    click.echo(f"model {model.name}: {model.status}, license {model.license}")
    click.echo(f"  renders held: {change.held_renders}, released and queued again: "
               f"{len(change.released_render_ids)}, still held: {change.still_held_renders}, "
               f"assets flagged for re-review: {change.flagged_assets}")


@models.command("add")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--name", required=True, help="The model's name in the farm.")
@click.option("--kind", required=True, type=click.Choice(["checkpoint", "lora", "vae", "upscaler"]))
@click.option("--license", "license_identifier", required=True, help="License identifier (see farm licenses list).")
@click.option("--base", default=None, help="The checkpoint a LoRA (required), fine-tune or VAE derives from.")
@click.option("--source", "source_url", default=None, help="Where the files came from (URL).")
@click.option("--architecture", default=None, type=click.Choice(["sd1", "sd2", "sdxl", "upscaler"]),
              help="Detected for a diffusers checkpoint; a LoRA takes its base's.")
@as_option
def models_add(path, name, kind, license_identifier, base, source_url, architecture, as_user) -> None:
    """Register the model at PATH (a .safetensors file or a diffusers folder in a model folder)."""
    from farm.db.session import transaction
    from farm.models.admin import add_model

    ctx = _ctx()
    with transaction(ctx.session_factory) as session:
        info = add_model(session, ctx.settings, _actor(session, as_user), path=path, name=name, kind=kind,
                         license_identifier=license_identifier, base=base, source_url=source_url,
                         architecture=architecture)
    click.echo(f"registered {info.kind} {info.name} ({info.architecture}) sha256 {info.sha256} "
               f"[{info.short_hash}] under {info.license}, added by {info.added_by}")


@models.command("list")
@click.option("--kind", default=None, type=click.Choice(["checkpoint", "lora", "vae", "upscaler"]))
@click.option("--status", default=None, type=click.Choice(["active", "suspended"]))
@click.option("--license", "license_identifier", default=None)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def models_list(kind, status, license_identifier, as_json) -> None:
    """Registered models: kind, architecture, short hash, license, status."""
    from farm.db.session import transaction
    from farm.models.admin import list_models

    with transaction(_ctx().session_factory) as session:
        rows = list_models(session, kind=kind, status=status, license_identifier=license_identifier)
    if as_json:
        _echo_json([row.to_dict() for row in rows])
        return
    click.echo(f"{'NAME':<28} {'KIND':<11} {'ARCH':<9} {'HASH':<11} {'STATUS':<10} LICENSE")
    for row in rows:
        click.echo(f"{row.name:<28} {row.kind:<11} {row.architecture:<9} {row.short_hash:<11} {row.status:<10} "
                   f"{row.license}")


@models.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def models_show(name, as_json) -> None:
    """One model: files, hash, license, who added it, its renders and assets."""
    from farm.db.session import transaction
    from farm.models.admin import show_model

    try:
        with transaction(_ctx().session_factory) as session:
            detail = show_model(session, name)
    except InvalidInput as error:
        raise _renamed(error, "model", "NAME") from None
    if as_json:
        _echo_json(detail.to_dict())
        return
    m = detail.model
    click.echo(f"{m.name}  {m.kind} {m.architecture}  {m.status}" + (f": {m.status_reason}" if m.status_reason else ""))
    click.echo(f"  sha256 {m.sha256} [{m.short_hash}]")
    click.echo(f"  files {m.uri}")
    click.echo(f"  license {m.license} ({m.license_name}; commercial use {m.commercial_use})")
    if m.base_model:
        click.echo(f"  base {m.base_model}")
    if m.source_url:
        click.echo(f"  source {m.source_url}")
    click.echo(f"  added by {m.added_by or 'the farm'} at {m.created_at:%Y-%m-%d %H:%M:%S} UTC")
    if detail.derivatives:
        click.echo(f"  derivatives: {', '.join(detail.derivatives)}")
    click.echo(f"  renders queued {detail.queued_renders}, held {detail.held_renders}; assets {detail.assets} "
               f"({detail.assets_needing_rereview} need re-review)")


def _model_change(change_now, *args):
    try:
        return change_now(*args)
    except InvalidInput as error:
        raise _renamed(error, "model", "NAME") from None


@models.command("suspend")
@click.argument("name")
@click.option("--reason", required=True, help="Why (shown on held renders, kept in the audit log).")
@as_option
def models_suspend(name, reason, as_user) -> None:
    """Stop renders with model NAME: its queued renders are held, its assets flagged for re-review."""
    from farm.models.admin import suspend_model

    ctx = _ctx()
    _print_change(_in_transaction_and_route(ctx, as_user, lambda s, actor: suspend_model(
        s, ctx.settings, actor, name, reason)))


@models.command("unsuspend")
@click.argument("name")
@as_option
def models_unsuspend(name, as_user) -> None:
    """Let model NAME render again; held renders the policy allows are queued again."""
    from farm.models.admin import unsuspend_model

    ctx = _ctx()
    _print_change(_in_transaction_and_route(ctx, as_user, lambda s, actor: unsuspend_model(
        s, ctx.settings, actor, name)))


@models.command("set-license")
@click.argument("name")
@click.argument("license_identifier", metavar="LICENSE")
@click.option("--reason", default=None, help="Why (kept in the audit log).")
@as_option
def models_set_license(name, license_identifier, reason, as_user) -> None:
    """Put model NAME under LICENSE: renders the new terms refuse are held, its assets flagged."""
    from farm.models.admin import set_model_license

    ctx = _ctx()
    _print_change(_in_transaction_and_route(ctx, as_user, lambda s, actor: set_model_license(
        s, ctx.settings, actor, name, license_identifier, reason)))


@models.command("recheck")
@click.argument("name", required=False)
@as_option
def models_recheck(name, as_user) -> None:
    """Re-check held renders (of model NAME's chains, or all) and queue those now allowed."""
    from farm.models.admin import ModelChange, recheck_held

    ctx = _ctx()
    change = _in_transaction_and_route(ctx, as_user, lambda s, actor: recheck_held(s, ctx.settings, actor, name))
    if isinstance(change, ModelChange):
        _print_change(change)
    else:
        click.echo(f"released {change['released_renders']} renders; {change['still_held_renders']} still held")


def _in_transaction_and_route(ctx, as_user, change_of):
    """Run the change as the actor in one transaction, then queue the renders it released."""
    from farm.db.session import transaction
    from farm.models.admin import ModelChange
    from farm.queue.routing import publish, route_renders

    try:
        with transaction(ctx.session_factory) as session:
            change = change_of(session, _actor(session, as_user))
            released = (change.released_render_ids if isinstance(change, ModelChange)
                        else change["released_render_ids"])
            messages = route_renders(session, ctx.settings, released) if released else []
    except InvalidInput as error:
        raise _renamed(error, "model", "NAME") from None
    publish(ctx.celery, ctx.session_factory, messages)
    return change


# -- farm audit -----------------------------------------------------------------------------------------

@click.group()
def audit() -> None:
    """The audit log: verify its chain, export it, auditor reports."""


@audit.command("verify")
@click.option("--anchor", "anchors", multiple=True, metavar="ID:HASH",
              help="An earlier head (as this command prints it) that must still be in the log.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def audit_verify(anchors, as_json) -> None:
    """Check every event's hash and link; exit 1 naming the first bad event."""
    from farm.audit.log import chain_head, verify_chain
    from farm.db.session import transaction

    with transaction(_ctx().session_factory) as session:
        problems = verify_chain(session, anchors)
        head = chain_head(session)
    if as_json:
        _echo_json({"ok": not problems, "problems": [p.to_dict() for p in problems],
                    "head": head.anchor() if head else None, "events": head.events if head else 0})
    elif problems:
        first = problems[0]
        click.echo(f"audit log FAILED: event {first.event_id} {first.problem}", err=True)
        for problem in problems[1:20]:
            click.echo(f"  event {problem.event_id} {problem.problem}", err=True)
        if len(problems) > 20:
            click.echo(f"  ... {len(problems) - 20} more", err=True)
    else:
        click.echo(f"audit log OK: {head.events if head else 0} events; head {head.anchor() if head else '-'}")
        click.echo("keep the head outside the database; `farm audit verify --anchor HEAD` later shows "
                   "whether anything up to it was rewritten or cut")
    if problems:
        sys.exit(EXIT_AUDIT_FAILED)


@audit.command("export")
@click.option("--from", "since", required=True, metavar="DATE", help="First day (YYYY-MM-DD, UTC).")
@click.option("--to", "until", required=True, metavar="DATE", help="Last day (YYYY-MM-DD, UTC), included.")
@click.option("--format", "fmt", default="json", show_default=True, type=click.Choice(["csv", "json"]))
@click.option("--out", "out_file", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Write here instead of standard output.")
def audit_export(since, until, fmt, out_file) -> None:
    """The audit events of a date range, as CSV or JSON."""
    from farm.audit.reports import export_events
    from farm.db.session import transaction

    with transaction(_ctx().session_factory) as session:
        text = export_events(session, since, until, fmt)
    if out_file is None:
        click.echo(text, nl=False)
        return
    out_file.write_text(text, encoding="utf-8")
    click.echo(f"wrote {out_file}", err=True)


@audit.command("report")
@click.argument("kind", type=click.Choice(["models", "licenses", "campaign", "refusals"]))
@click.option("--campaign", "campaign_name", default=None, help="For `campaign`: the campaign's name.")
@click.option("--from", "since", default=None, metavar="DATE")
@click.option("--to", "until", default=None, metavar="DATE")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (the default is JSON too).")
def audit_report(kind, campaign_name, since, until, as_json) -> None:
    """Auditor reports: usage per model or license, a campaign's license report, refusals."""
    from farm.audit import reports
    from farm.campaigns.service import get_campaign
    from farm.db.session import transaction

    with transaction(_ctx().session_factory) as session:
        if kind == "models":
            data = [row.to_dict() for row in reports.model_usage(session, since, until)]
        elif kind == "licenses":
            data = [row.to_dict() for row in reports.license_usage(session, since, until)]
        elif kind == "refusals":
            data = [row.to_dict() for row in reports.list_refusals(session, since, until)]
        else:
            if not campaign_name:
                raise InvalidInput("campaign", "give --campaign NAME")
            campaign = get_campaign(session, campaign_name)
            data = reports.campaign_license_report(session, campaign.id, since, until).to_dict()
    _echo_json(data)
