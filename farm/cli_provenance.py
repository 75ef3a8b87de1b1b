"""`farm provenance show FILE`: what a PNG says about where it came from, and whether its C2PA
signature holds (farm.cli adds this group to `farm`).

Exit status: 0 when the file has no manifest or a valid one (intact; trusted or not), 1 when it
has a manifest that fails validation, 2 for bad input (no such file, not a PNG).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from farm.errors import InvalidInput

EXIT_MANIFEST_INVALID = 1


@click.group()
def provenance() -> None:
    """Provenance of images: C2PA manifests, PNG text chunks, watermarks."""


@provenance.command("show")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON.")
@click.option("--trust-anchors", "trust_anchors", type=click.Path(path_type=Path), default=None,
              help="PEM file of CA certificates whose signers count as trusted "
                   "(default: the c2pa_trust_anchors_path setting).")
def provenance_show(file: Path, as_json: bool, trust_anchors: Path | None) -> None:
    """Read FILE's AUTOMATIC1111 parameters, farm chunk, C2PA manifest (and whether its signature
    is valid) and watermark."""
    from farm.provenance.reading import read_provenance

    try:
        data = file.read_bytes()
    except OSError as error:
        raise InvalidInput("FILE", f"cannot read {file}: {error.strerror}") from None
    anchors = _trust_anchors(trust_anchors)
    try:
        report = read_provenance(data, anchors)
    except InvalidInput as error:
        raise InvalidInput("FILE", f"{file}: {error.message}") from None
    if as_json:
        click.echo(json.dumps({"file": str(file), **report}, indent=2, default=str))
    else:
        _print_report(file, report, trusting=bool(anchors))
    manifest = report["c2pa"]
    if manifest is not None and not manifest["validation"]["valid"]:
        sys.exit(EXIT_MANIFEST_INVALID)


def _trust_anchors(path: Path | None) -> str | None:
    flag = "--trust-anchors"
    if path is None:
        from farm.settings import load_settings

        setting = load_settings().c2pa_trust_anchors_path
        if not setting:
            return None
        path, flag = Path(setting), "c2pa_trust_anchors_path"
    try:
        text = path.expanduser().read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInput(flag, f"cannot read {path}: {getattr(error, 'strerror', None) or error}") from None
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise InvalidInput(flag, f"{path} holds no PEM certificate")
    return text


def _print_report(file: Path, report: dict, trusting: bool) -> None:
    echo = click.echo
    echo(f"file: {file}")
    echo("parameters (AUTOMATIC1111):")
    for line in (report["parameters"] or "(none)").splitlines():
        echo(f"  {line}")
    farm = report["farm"]
    if farm is None:
        echo("farm chunk: (none)")
    else:
        echo("farm chunk: " + _farm_line(farm))
    manifest = report["c2pa"]
    if manifest is None:
        echo("C2PA manifest: none")
    else:
        _print_manifest(manifest, trusting)
    watermark = report["watermark"]
    expected = (farm or {}).get("watermark") if isinstance(farm, dict) else None
    if watermark:
        echo(f"watermark ({watermark['method']}): farm {watermark['farm_id']}, render {watermark['render_id']}")
    elif isinstance(expected, dict) and "render_id" in expected:
        echo("watermark: none found, though the farm chunk says the image was marked "
             "(the pixels were changed, resized or re-encoded)")
    else:
        echo("watermark: none found")


# The farm chunk's fields in the order people ask about them; any others follow.
FARM_FIELDS = {"render_id": "render", "job_id": "job", "kind": "kind", "model": "model",
               "model_sha256": "sha256", "license": "license"}


def _farm_line(farm: dict) -> str:
    if "unreadable" in farm:
        return f"unreadable JSON: {farm['unreadable']!r}"
    known = [f"{label} {farm[key]}" for key, label in FARM_FIELDS.items() if key in farm]
    rest = [f"{key} {value}" for key, value in farm.items()
            if key not in FARM_FIELDS and not isinstance(value, (list, dict))]
    return ", ".join(known + rest)


def _print_manifest(manifest: dict, trusting: bool) -> None:
    echo = click.echo
    echo(f"C2PA manifest: {manifest.get('label')}")
    if manifest.get("claim_generator"):
        echo(f"  claim generator: {manifest['claim_generator']}")
    for action in manifest.get("actions", []):
        source = (action.get("digital_source_type") or "").rsplit("/", 1)[-1]
        echo(f"  action: {action['action']}, digital source type: {source or '(none)'}")
    generation = manifest.get("generation")
    if generation:
        echo(f"  render {generation.get('render_id')}, job {generation.get('job_id')}, "
             f"campaign {generation.get('campaign_id')}, kind {generation.get('kind')}")
        for model in generation.get("models", []):
            via = f" (carried from {model['via']})" if model.get("via") else ""
            echo(f"  {model.get('kind') or 'model'}: {model.get('name')}, sha256 {model.get('sha256')}, "
                 f"license {model.get('license')}{via}")
            if model.get("attribution"):
                echo(f"    attribution: {model['attribution']}")
    signer = manifest.get("signer") or {}
    if signer.get("common_name") or signer.get("issuer"):
        echo(f"  signed by: {signer.get('common_name')} (issuer {signer.get('issuer')}), {signer.get('algorithm')}"
             + (f", at {signer['time']}" if signer.get("time") else ""))
    validation = manifest["validation"]
    failures = validation["failures"]
    if not validation["valid"]:
        echo("  signature: INVALID")
        for failure in failures:
            echo(f"    {failure['code']}: {failure['explanation']}")
    elif validation["trusted"]:
        echo("  signature: valid, signer trusted")
    else:
        why = "not on the trust anchors given" if trusting else \
            "no trust anchors given: --trust-anchors or the c2pa_trust_anchors_path setting"
        echo(f"  signature: valid (the file is as signed); signer not trusted ({why})")
