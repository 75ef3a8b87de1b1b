"""Reading an image's provenance back: the text chunks, the C2PA manifest and its validation, and
the watermark (`farm provenance show`).

C2PA's validation states, as c2pa reports them:
- `Invalid`: something does not check out, e.g. `assertion.dataHash.mismatch` when any byte
  of the image (pixels or text chunks) changed after signing, or a broken signature;
- `Valid`: the manifest and the signature are intact, but the signer's certificate does not
  chain to a trust anchor given to the reader (`signingCredential.untrusted`);
- `Trusted`: intact, and signed by a certificate that chains to a trust anchor.
"""

from __future__ import annotations

import io
import json
from typing import Any

from PIL import Image

from farm.provenance.manifest import ACTIONS_LABEL, GENERATION_LABEL, OFFLINE_VERIFY, PNG_MIME_TYPE
from farm.render.png import FARM_KEY, PARAMETERS_KEY, read_png_text

UNTRUSTED = "signingCredential.untrusted"
# What a failure code means for someone holding the file.
HINTS = {
    "assertion.dataHash.mismatch": "the image's bytes (pixels or text chunks) changed after it was signed",
    "claimSignature.mismatch": "the signature does not match the manifest",
    "signingCredential.untrusted": "the signer's certificate does not chain to a trusted CA",
    "signingCredential.expired": "the signer's certificate had expired when it signed",
    "signingCredential.invalid": "the signer's certificate is not one C2PA accepts",
}


def read_provenance(data: bytes, trust_anchors_pem: str | None = None) -> dict[str, Any]:
    """Everything the file says about where it came from, as plain data.

    `c2pa` is None when the file has no manifest; otherwise its `validation.state` is one of
    Invalid, Valid, Trusted (see the module's docstring), with the failures and what they mean.
    """
    text = read_png_text(data)
    farm_chunk = text.get(FARM_KEY)
    try:
        farm = json.loads(farm_chunk) if farm_chunk is not None else None
    except json.JSONDecodeError:
        farm = {"unreadable": farm_chunk}
    return {
        "parameters": text.get(PARAMETERS_KEY),
        "farm": farm,
        "c2pa": read_manifest(data, trust_anchors_pem),
        "watermark": read_watermark(data),
    }


def read_manifest(data: bytes, trust_anchors_pem: str | None = None) -> dict[str, Any] | None:
    import c2pa

    settings: dict[str, Any] = {"verify": OFFLINE_VERIFY}
    if trust_anchors_pem:
        settings["trust"] = {"user_anchors": trust_anchors_pem}
    try:
        with c2pa.Context.from_dict(settings) as context, \
                c2pa.Reader(PNG_MIME_TYPE, io.BytesIO(data), context=context) as reader:
            store = json.loads(reader.json())
            state = reader.get_validation_state()
            results = reader.get_validation_results() or {}
    except c2pa.C2paError as error:
        if type(error).__name__ == "_C2paManifestNotFound" or "ManifestNotFound" in str(error):
            return None
        # A manifest store is there but cannot even be parsed: that is an invalid manifest.
        return {"validation": {"state": "Invalid", "valid": False, "trusted": False,
                               "failures": [{"code": "manifest.unreadable", "explanation": str(error)}]}}
    manifest = store.get("manifests", {}).get(store.get("active_manifest"), {})
    assertions = {a.get("label"): a.get("data") for a in manifest.get("assertions", [])}
    actions = (assertions.get(ACTIONS_LABEL) or assertions.get("c2pa.actions") or {}).get("actions", [])
    signature = manifest.get("signature_info", {})
    failures = (results.get("activeManifest") or {}).get("failure", [])
    return {
        "label": store.get("active_manifest"),
        "claim_generator": ", ".join(f"{g.get('name')}/{g.get('version')}" if g.get("version") else str(g.get("name"))
                                     for g in manifest.get("claim_generator_info", [])),
        "title": manifest.get("title"),
        "actions": [{"action": a.get("action"), "digital_source_type": a.get("digitalSourceType"),
                     "software_agent": _agent(a.get("softwareAgent"))} for a in actions],
        "generation": assertions.get(GENERATION_LABEL),
        "signer": {"common_name": signature.get("common_name"), "issuer": signature.get("issuer"),
                   "algorithm": signature.get("alg"), "serial_number": signature.get("cert_serial_number"),
                   "time": signature.get("time")},
        "validation": {
            "state": state,
            "valid": state in ("Valid", "Trusted"),
            "trusted": state == "Trusted",
            "failures": [{"code": f.get("code"), "explanation": HINTS.get(f.get("code"), f.get("explanation"))}
                         for f in failures],
        },
    }


def read_watermark(data: bytes) -> dict[str, Any] | None:
    from farm.provenance.watermark import decode

    with Image.open(io.BytesIO(data)) as image:
        found = decode(image)
    return found.to_dict() if found else None


def _agent(agent: Any) -> str | None:
    if isinstance(agent, dict):
        return f"{agent.get('name')}/{agent.get('version')}" if agent.get("version") else agent.get("name")
    return agent
