"""The `farm` command.

Bad input (a flag, a config key) prints `error: <field>: <message>` and exits with status 2,
before anything is written. torch is imported only by the commands that render, so that
`farm worker --gpu N` can set CUDA_VISIBLE_DEVICES before it loads.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

import click

from farm.errors import InvalidInput
from farm.settings import Settings, load_settings

# Core fields named after the flags a CLI user typed.
FLAG_FOR_FIELD = {
    "prompt": "PROMPT", "negative_prompt": "--negative", "seed": "--seed", "steps": "--steps",
    "cfg_scale": "--cfg", "size": "--size", "width": "--size", "height": "--size", "sampler": "--sampler",
    "count": "-n/--count", "model": "--model", "campaign": "--campaign", "priority": "--priority",
    "gpu": "--gpu", "gpus": "--gpus", "queues": "--queues",
    "scale": "--scale", "upscaler": "--upscaler", "assets": "ASSET_IDS", "name": "--name",
    "role": "--role", "email": "--email", "password": "--password-stdin",
    # farm licenses / models / audit (farm.cli_compliance)
    "as": "--as", "reason": "--reason", "kind": "--kind", "license": "--license", "base": "--base",
    "source": "--source", "architecture": "--architecture", "path": "PATH", "identifier": "IDENTIFIER",
    "commercial_use": "--commercial-use", "revenue_cap_usd": "--revenue-cap", "attribution_text": "--attribution",
    "use_restrictions": "--restriction", "url": "--url", "text": "--text", "text_sha256": "--text",
    "from": "--from", "to": "--to", "format": "--format", "anchor": "--anchor", "status": "--status",
    "loras": "--lora", "vae": "--vae",
}
EXIT_BAD_INPUT = 2
EXIT_JOB_FAILED = 1


def _fail(error: InvalidInput) -> None:
    flag = FLAG_FOR_FIELD.get(error.field)
    if not flag:
        label = error.field
    elif flag.split("/")[-1].lstrip("-") == error.field:
        label = flag
    else:
        label = f"{flag} ({error.field})"
    click.echo(f"error: {label}: {error.message}", err=True)
    sys.exit(EXIT_BAD_INPUT)


class FarmGroup(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except InvalidInput as error:
            _fail(error)


def _context(settings: Settings | None = None):
    from farm.context import FarmContext

    return FarmContext(settings or load_settings())


@click.group(cls=FarmGroup)
def main() -> None:
    """A render farm for Stable Diffusion: campaigns, batch renders, review and provenance."""
    # The farm never fetches anything from a model hub at run time: models are local files.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # Library chatter (optional backends it does not need) is not for the farm's users.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    # Nor are the libraries' loading bars: a worker's log is read by people and log collectors.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


# -- farm up --------------------------------------------------------------------------------

@main.command()
@click.option("--host", default=None, help="Address to listen on (default: web_host setting).")
@click.option("--port", default=None, type=click.IntRange(1, 65535), help="Port (default: web_port setting).")
@click.option("--no-worker", is_flag=True, help="Serve the dashboard only; run workers elsewhere.")
def up(host: str | None, port: int | None, no_worker: bool) -> None:
    """Run the farm on this machine: database, tiny model, dashboard and a worker."""
    from waitress import serve

    from dashboard.app import create_app
    from farm.context import prepare_database
    from farm.queue.worker import in_process_worker

    from farm.accounts.bootstrap import ensure_initial_admin

    ctx = _context()
    click.echo(f"preparing {ctx.settings.database_url} and the default model ...")
    prepare_database(ctx)
    password_file = ensure_initial_admin(ctx)
    if password_file:
        click.echo(f"first run: created the user 'admin'; its password is in {password_file}")
    host = host or ctx.settings.web_host
    port = port or ctx.settings.web_port
    app = create_app(ctx)

    def serve_dashboard() -> None:
        click.echo(f"dashboard on http://{host}:{port}  (Ctrl-C stops the farm)")
        serve(app, host=host, port=port, threads=8, _quiet=True)

    if no_worker:
        serve_dashboard()
        return
    with in_process_worker(ctx.celery):
        click.echo(f"worker ready, storing images in {ctx.storage.describe()}")
        serve_dashboard()


# -- farm web --------------------------------------------------------------------------------

@main.command()
@click.option("--host", default=None, help="Address to listen on (default: web_host setting).")
@click.option("--port", default=None, type=click.IntRange(1, 65535), help="Port (default: web_port setting).")
@click.option("--workers", default=2, type=click.IntRange(1, 64), show_default=True,
              help="gunicorn worker processes (each with 8 threads).")
def web(host: str | None, port: int | None, workers: int) -> None:
    """Serve the dashboard and the API under gunicorn (production); migrate with `farm db upgrade` first."""
    from dashboard.server import serve
    from farm.settings import web_secret_key

    settings = load_settings()
    web_secret_key(settings)  # a missing or short key stops us here, naming it, not in every worker
    ctx = _context(settings)
    if ctx.is_embedded:
        from farm.context import prepare_database

        prepare_database(ctx)
    ctx.db_engine.dispose()  # no pooled connection may cross gunicorn's fork
    serve(host or settings.web_host, port or settings.web_port, workers)


# -- farm render ----------------------------------------------------------------------------

def _parse_size(value: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)x(\d+)", value.strip().lower())
    if not match:
        raise InvalidInput("size", f"'{value}' is not WIDTHxHEIGHT, for example 512x512")
    return int(match.group(1)), int(match.group(2))


def _parse_lora(value: str) -> dict:
    name, _, weight = value.rpartition(":") if ":" in value else (value, "", "")
    if not weight:
        return {"name": name}
    try:
        return {"name": name, "weight": float(weight)}
    except ValueError:
        raise InvalidInput("loras", f"'{value}' is not NAME or NAME:WEIGHT") from None


@main.command()
@click.argument("prompt")
@click.option("--negative", default="", help="Negative prompt.")
@click.option("--seed", default=None, type=int, help="Seed of the first image (default: random).")
@click.option("--steps", default=20, type=int, show_default=True)
@click.option("--cfg", "cfg_scale", default=7.0, type=float, show_default=True, help="CFG scale.")
@click.option("--size", default="512x512", show_default=True, help="WIDTHxHEIGHT, multiples of 8.")
@click.option("--sampler", default="Euler a", show_default=True, help="AUTOMATIC1111 sampler name.")
@click.option("-n", "--count", default=1, type=int, show_default=True, help="Images; image i uses seed+i.")
@click.option("--model", default=None, help="Registered model name (default: default_model setting).")
@click.option("--campaign", default=None, help="Campaign name (default: ad hoc renders).")
@click.option("--priority", default=5, type=int, show_default=True, help="0 (low) to 9 (high).")
@click.option("--lora", "loras", multiple=True, metavar="NAME[:WEIGHT]",
              help="A registered LoRA for the chain (repeat). The license policy checks it; the renderer "
                   "applies LoRAs from issue 6 on.")
@click.option("--vae", default=None, help="A registered VAE for the chain (checked by the license policy).")
@click.option("--out", "out_dir", default="out", show_default=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--detach", is_flag=True, help="Print the job id and return without waiting.")
def render(prompt, negative, seed, steps, cfg_scale, size, sampler, count, model, campaign, priority, loras, vae,
           out_dir: Path, detach: bool) -> None:
    """Render PROMPT through the farm and write the PNGs into --out."""
    import random

    from farm.render.params import MAX_BATCH_COUNT, Txt2ImgParams, validate_batch, validate_txt2img

    width, height = _parse_size(size)
    if not 1 <= count <= MAX_BATCH_COUNT:
        raise InvalidInput("count", f"must be between 1 and {MAX_BATCH_COUNT}")
    seed = random.randrange(0, 2**32 - count) if seed is None else seed
    if not prompt.strip():
        raise InvalidInput("prompt", "is empty")
    if not 0 <= priority <= 9:
        raise InvalidInput("priority", "must be between 0 and 9")
    params = dict(steps=steps, cfg_scale=cfg_scale, sampler=sampler, width=width, height=height)
    # Everything that needs no database is checked before the database is even opened.
    first = Txt2ImgParams(prompt=prompt, negative_prompt=negative, seed=seed, **params)
    validate_txt2img(first)
    validate_batch(first, count)
    if loras:
        params["loras"] = [_parse_lora(value) for value in loras]
    if vae is not None:
        params["vae"] = vae

    from farm.context import prepare_database
    from farm.jobs.dispatch import submit_prompt

    ctx = _context()
    if ctx.is_embedded:
        prepare_database(ctx)
    job_id = submit_prompt(ctx, prompt=prompt, negative_prompt=negative, seed=seed, count=count,
                           params=params, model_name=model, campaign_name=campaign, priority=priority)
    _finish_job(ctx, job_id, out_dir, detach)


@main.command()
@click.argument("asset_ids", nargs=-1, required=True, type=int)
@click.option("--scale", default=2.0, type=float, show_default=True, help="Factor, above 1 and at most 8.")
@click.option("--upscaler", default=None, help="Registered upscaler (default: the built-in lanczos).")
@click.option("--priority", default=5, type=int, show_default=True, help="0 (low) to 9 (high).")
@click.option("--out", "out_dir", default="out", show_default=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--detach", is_flag=True, help="Print the job id and return without waiting.")
def upscale(asset_ids, scale: float, upscaler: str | None, priority: int, out_dir: Path, detach: bool) -> None:
    """Upscale existing assets (by id) and write the PNGs into --out."""
    from farm.jobs.dispatch import submit_upscale_job
    from farm.render.upscale import validate_scale

    validate_scale(scale)  # before the database is opened
    if not 0 <= priority <= 9:
        raise InvalidInput("priority", "must be between 0 and 9")
    ctx = _context()
    job_id = submit_upscale_job(ctx, asset_ids=list(asset_ids), scale=scale, upscaler=upscaler, priority=priority)
    _finish_job(ctx, job_id, out_dir, detach)


def _finish_job(ctx, job_id: int, out_dir: Path, detach: bool) -> None:
    """Print the job id (--detach), or wait for the job, write its images and exit 1 if it failed."""
    if detach:
        click.echo(job_id)
        return
    if ctx.settings.uses_embedded_broker:
        from farm.queue.worker import in_process_worker

        with in_process_worker(ctx.celery):
            status = _wait_for_job(ctx, job_id)
    else:
        status = _wait_for_job(ctx, job_id)
    for path in _write_outputs(ctx, job_id, out_dir):
        click.echo(path)
    if status != "succeeded":
        click.echo(f"job {job_id} {status}; see `farm jobs show {job_id}`", err=True)
        sys.exit(EXIT_JOB_FAILED)


def _wait_for_job(ctx, job_id: int, poll_seconds: float = 0.25) -> str:
    from farm.jobs.queries import job_progress

    show_bar = sys.stderr.isatty()
    while True:
        progress = job_progress(ctx.session_factory, job_id)
        if show_bar:
            click.echo("\r" + progress.bar(), nl=False, err=True)
        if progress.finished:
            if show_bar:
                click.echo(err=True)
            return progress.status
        time.sleep(poll_seconds)


def _write_outputs(ctx, job_id: int, out_dir: Path) -> list[Path]:
    from farm.jobs.queries import job_assets

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for asset in job_assets(ctx.session_factory, job_id):
        if asset.parent_asset_id:  # an upscale: name its source and its new size
            name = f"job{job_id}-{asset.render_index:03d}-asset{asset.parent_asset_id}-{asset.width}x{asset.height}.png"
        else:
            name = f"job{job_id}-{asset.render_index:03d}-seed{asset.seed}.png"
        path = out_dir / name
        path.write_bytes(ctx.storage.get(asset.storage_key))
        paths.append(path)
    return paths


# -- farm jobs ------------------------------------------------------------------------------

@main.group()
def jobs() -> None:
    """Inspect jobs."""


@jobs.command("show")
@click.argument("job_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def jobs_show(job_id: int, as_json: bool) -> None:
    """Show a job and the state of each of its renders."""
    from farm.jobs.queries import job_report

    ctx = _context()
    report = job_report(ctx.session_factory, job_id, ctx.settings.heartbeat_seconds, ctx.settings.queue_routes)
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
        return
    click.echo(f"job {report['id']}  {report['status']}  campaign={report['campaign']}  "
               f"model={report['model']}  priority={report['priority']}")
    if report["waiting_reason"]:
        click.echo(f"  waiting: {report['waiting_reason']}")
    for r in report["renders"]:
        line = (f"  #{r['index']:<4} render {r['id']:<6} {r['state']:<10} "
                f"step {r['progress_step']}/{r['progress_total']}  seed {r['params']['seed']}")
        if r["asset"]:
            line += f"  {r['asset']['storage_key']}"
        if r["error"]:
            line += f"  error: {r['error']}"
        click.echo(line)


# -- farm jobs pause / resume / cancel --------------------------------------------------------

def _control_job(job_id: int, action) -> str:
    from farm.db.session import transaction

    ctx = _context()
    with transaction(ctx.session_factory) as session:
        status = action(session, job_id).status
    return status


@jobs.command("pause")
@click.argument("job_id", type=int)
def jobs_pause(job_id: int) -> None:
    """Stop starting the job's renders (those running finish)."""
    from farm.jobs.control import pause_job

    click.echo(f"job {job_id} {_control_job(job_id, pause_job)}")


@jobs.command("resume")
@click.argument("job_id", type=int)
def jobs_resume(job_id: int) -> None:
    """Queue a paused job's renders again."""
    from farm.jobs.control import resume_job
    from farm.jobs.dispatch import enqueue_job

    status = _control_job(job_id, resume_job)
    queued = enqueue_job(_context(), job_id)
    click.echo(f"job {job_id} {status}, {queued} renders queued again")


@jobs.command("cancel")
@click.argument("job_id", type=int)
def jobs_cancel(job_id: int) -> None:
    """Cancel renders not yet running; running ones stop and end cancelled."""
    from farm.jobs.control import cancel_job

    click.echo(f"job {job_id} {_control_job(job_id, cancel_job)}")


# -- farm worker / workers --------------------------------------------------------------------

def _parse_queues(value: str | None, settings: Settings) -> list[str]:
    from farm.queue.routing import known_queues

    known = known_queues(settings)
    if not value:
        return list(known)
    queues = [q.strip() for q in value.split(",") if q.strip()]
    unknown = [q for q in queues if q not in known]
    if not queues or unknown:
        raise InvalidInput("queues", f"unknown queue {unknown[0] if unknown else '(none)'}; known: {', '.join(known)} "
                                     "(more come from the queue_routes setting)")
    return queues


def _pin_device(gpu: str) -> str:
    """Set CUDA_VISIBLE_DEVICES for --gpu (before torch loads) and return the torch device."""
    if gpu == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        return "cpu"
    if not gpu.isdigit():
        raise InvalidInput("gpu", f"'{gpu}' is neither a GPU index nor 'cpu'")
    os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    import torch

    if torch.cuda.device_count() < 1:
        raise InvalidInput("gpu", f"GPU {gpu} does not exist or is not usable here (torch sees no CUDA "
                                  f"device with CUDA_VISIBLE_DEVICES={gpu})")
    return "cuda"


def _supervise_gpu_workers(click_ctx: click.Context, gpus: str, queues: str | None, name: str | None) -> int:
    """`farm worker --gpus`: one `farm worker --gpu N` child per GPU, restarted when it dies."""
    import socket

    from click.core import ParameterSource

    from farm.queue.supervisor import gpu_worker_children, parse_gpus, worker_supervisor

    if click_ctx.get_parameter_source("gpu") is not ParameterSource.DEFAULT:
        raise InvalidInput("gpus", "give --gpu (one worker) or --gpus (one worker per GPU), not both")
    if name is not None:
        raise InvalidInput("gpus", "--name names one worker; with --gpus each worker is named HOST:GPU")
    devices = parse_gpus(gpus)
    settings = load_settings()  # bad settings stop us here, not once per child
    children = gpu_worker_children(devices, socket.gethostname(), queues)
    return worker_supervisor(children, settings).run()


@main.group(invoke_without_command=True)
@click.option("--gpu", default="cpu", show_default=True, help="GPU index to pin to, or 'cpu'.")
@click.option("--gpus", default=None,
              help="'all' or GPU indices (0,1): one worker process per GPU, restarted if it dies.")
@click.option("--queues", default=None, help="Comma-separated queues (default: all).")
@click.option("--name", default=None, help="Worker name (default HOST:GPU, or HOST:cpu-PID).")
@click.pass_context
def worker(click_ctx: click.Context, gpu: str, gpus: str | None, queues: str | None, name: str | None) -> None:
    """Run a worker process pinned to one GPU (or the CPU), or one per GPU (--gpus); or manage one
    (drain, undrain)."""
    if click_ctx.invoked_subcommand is not None:
        return
    if gpus is not None:
        sys.exit(_supervise_gpu_workers(click_ctx, gpus, queues, name))
    queue_list = _parse_queues(queues, load_settings())
    device = _pin_device(gpu)
    from farm.queue.worker import default_worker_name, run_worker

    settings = load_settings().model_copy(update={"device": device})
    run_worker(_context(settings).celery, queue_list, name or default_worker_name(gpu))


def _set_draining(name: str, draining: bool) -> None:
    from farm.db.session import transaction
    from farm.workers.registry import set_draining

    with transaction(_context().session_factory) as session:
        status = set_draining(session, name, draining).status
    click.echo(f"worker {name} {status}")


@worker.command("drain")
@click.argument("name")
def worker_drain(name: str) -> None:
    """Let worker NAME (HOST:GPU) finish its current render and take no more."""
    _set_draining(name, True)


@worker.command("undrain")
@click.argument("name")
def worker_undrain(name: str) -> None:
    """Let a draining worker take renders again."""
    _set_draining(name, False)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def workers(as_json: bool) -> None:
    """The workers: host, GPU, status, heartbeat age, warm models."""
    from farm.db.session import transaction
    from farm.workers.registry import worker_table

    ctx = _context()
    with transaction(ctx.session_factory) as session:
        rows = worker_table(session, ctx.settings.heartbeat_seconds)
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    click.echo(f"{'NAME':<28} {'STATUS':<9} {'GPU':<22} {'HEARTBEAT':>9}  WARM MODELS")
    for w in rows:
        gpu = "cpu" if w["gpu_index"] is None else f"{w['gpu_index']} {w['gpu_name'] or ''}".strip()
        click.echo(f"{w['name']:<28} {w['status']:<9} {gpu[:22]:<22} {w['heartbeat_age_seconds']:>8.0f}s  "
                   f"{', '.join(w['warm_models']) or '-'}")


# -- farm reaper ------------------------------------------------------------------------------

@main.command()
@click.option("--interval", default=15.0, type=click.FloatRange(0.5, 3600), show_default=True,
              help="Seconds between lease checks.")
@click.option("--sweep-every", default=40, type=click.IntRange(1, 100000), show_default=True,
              help="Sweep storage for orphans every N lease checks.")
@click.option("--once", is_flag=True, help="Check leases and sweep once, then exit.")
def reaper(interval: float, sweep_every: int, once: bool) -> None:
    """Re-queue renders whose worker died (their lease expired) or whose message was lost;
    delete orphaned objects."""
    from kombu.exceptions import OperationalError as BrokerUnreachable
    from sqlalchemy.exc import OperationalError as DatabaseUnreachable

    from farm.audit.renders import seal_render_events
    from farm.jobs.reaper import reap_expired_leases, resend_stranded, sweep_orphans

    ctx = _context()
    delay = interval
    checks = 0
    while True:
        try:
            report = reap_expired_leases(ctx)
            stranded = resend_stranded(ctx)
            seal_render_events(ctx.session_factory)  # render state changes into the audit log
            checks += 1
            if once or checks % sweep_every == 0:
                orphans = sweep_orphans(ctx)
                if orphans:
                    click.echo(f"deleted {len(orphans)} orphaned objects")
        except (DatabaseUnreachable, BrokerUnreachable) as error:
            if once:
                raise
            # The database or broker is unreachable: say so, wait longer each time, never give up.
            what = "database" if isinstance(error, DatabaseUnreachable) else "broker"
            delay = min(delay * 2, 300)
            reason = getattr(error, "orig", None) or error
            click.echo(f"reaper: {what} unreachable ({reason}); retrying in {delay:.0f} s", err=True)
            time.sleep(delay)
            continue
        delay = interval
        if report.requeued or report.failed:
            click.echo(f"requeued {report.requeued}, failed {report.failed}")
        if stranded:
            click.echo(f"sent again (message lost) {stranded}")
        if once:
            return
        time.sleep(interval)


# -- farm users ------------------------------------------------------------------------------

@main.group()
def users() -> None:
    """Dashboard and API accounts."""


def _show_token(name: str, token: str) -> None:
    click.echo(f"API token for {name} (it will not be shown again; only its hash is stored):")
    click.echo(token)


@users.command("create")
@click.argument("name")
@click.option("--role", required=True, help="admin, campaign_manager, reviewer, ops or auditor.")
@click.option("--email", default=None, help="Email address.")
@click.option("--password-stdin", is_flag=True, help="Read the password (10+ characters) from standard input.")
@click.option("--token", "with_token", is_flag=True, help="Also issue an API token and print it, once.")
def users_create(name: str, role: str, email: str | None, password_stdin: bool, with_token: bool) -> None:
    """Create user NAME with --role. Without a password the user can only use the API (--token)."""
    from farm.accounts.service import check_user_fields, create_user, issue_api_token
    from farm.db.session import transaction

    password = None
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise InvalidInput("password", "standard input gave no password")
    try:
        check_user_fields(name=name, role=role, password=password, email=email)  # before the database opens
        ctx = _context()
        if ctx.is_embedded:
            from farm.context import prepare_database

            prepare_database(ctx)
        with transaction(ctx.session_factory) as session:
            user = create_user(session, name=name, role=role, password=password, email=email)
            token = issue_api_token(session, user) if with_token else None
    except InvalidInput as error:
        if error.field == "name":  # here the name is the NAME argument, not worker's --name
            raise InvalidInput("NAME", error.message) from None
        raise
    click.echo(f"created user {user.name} ({user.role})")
    if token:
        _show_token(user.name, token)
    elif password is None:
        click.echo(f"{user.name} has no password and no token yet: give --password-stdin or --token", err=True)


@users.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def users_list(as_json: bool) -> None:
    """Every user: name, role, status, whether they hold an API token, email."""
    from farm.accounts.service import list_users
    from farm.db.session import transaction

    with transaction(_context().session_factory) as session:
        rows = [{"id": u.id, "name": u.name, "role": u.role, "email": u.email, "disabled": u.disabled,
                 "has_token": u.api_token_hash is not None, "created_at": u.created_at.isoformat()}
                for u in list_users(session)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'NAME':<24} {'ROLE':<17} {'STATUS':<9} {'TOKEN':<6} EMAIL")
    for u in rows:
        click.echo(f"{u['name']:<24} {u['role']:<17} {'disabled' if u['disabled'] else 'active':<9} "
                   f"{'yes' if u['has_token'] else '-':<6} {u['email'] or ''}")


@users.command("token")
@click.argument("name")
def users_token(name: str) -> None:
    """Issue a new API token for NAME (any earlier one stops working) and print it, once."""
    from farm.accounts.service import issue_api_token
    from farm.db.session import transaction

    with transaction(_context().session_factory) as session:
        token = issue_api_token(session, _user_named(session, name))
    _show_token(name, token)


@users.command("disable")
@click.argument("name")
def users_disable(name: str) -> None:
    """Refuse NAME's sign-in and API token from now on."""
    _set_user_disabled(name, True)


@users.command("enable")
@click.argument("name")
def users_enable(name: str) -> None:
    """Let a disabled user in again."""
    _set_user_disabled(name, False)


def _user_named(session, name: str):
    from farm.accounts.service import get_user_by_name
    from farm.errors import NotFound

    try:
        return get_user_by_name(session, name)
    except NotFound:
        raise InvalidInput("NAME", f"there is no user named '{name}' (see `farm users list`)") from None


def _set_user_disabled(name: str, disabled: bool) -> None:
    from farm.accounts.service import set_disabled
    from farm.db.session import transaction

    with transaction(_context().session_factory) as session:
        set_disabled(session, _user_named(session, name), disabled)
    click.echo(f"user {name} {'disabled' if disabled else 'enabled'}")


# -- farm db --------------------------------------------------------------------------------

@main.group()
def db() -> None:
    """Database administration."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Migrate the configured database to the latest schema and seed licenses and the tiny model."""
    from farm.context import prepare_database

    ctx = _context()
    prepare_database(ctx)
    click.echo(f"database at {ctx.db_engine.url.render_as_string(hide_password=True)} is up to date")


from farm.cli_compliance import audit, licenses, models  # noqa: E402  (they use the helpers above)

main.add_command(licenses)
main.add_command(models)
main.add_command(audit)

from farm.cli_provenance import provenance  # noqa: E402

main.add_command(provenance)

if __name__ == "__main__":
    main()
