"""C2PA manifests: what the farm says about each image it makes, signed into the PNG (c2pa-python).

A manifest holds two assertions:
- `c2pa.actions.v2`: one `c2pa.created` action by the software agent renderfarm/<version>, with
  the IPTC digital source type `trainedAlgorithmicMedia` (a text-to-image render), or
  `compositeWithTrainedAlgorithmicMedia` for a render made from an existing image (img2img,
  inpainting, outpainting, upscaling);
- `com.renderfarm.generation`, the farm's own: render, job and campaign ids, the render's kind,
  and every model of its chain (checkpoint, LoRAs, VAE, upscaler, and for an upscale the chain of
  its source) with its sha256 and license, the attribution and use restrictions the license asks
  to pass on, and `via` when these are a base model's terms that a derivative carries.

The claim's hard binding hashes the whole file but the manifest itself, so the PNG's text chunks
(AUTOMATIC1111's `parameters`, the farm's JSON) are written first and covered: changing a pixel,
the prompt or the farm chunk after signing makes the manifest invalid.

The signer is built once per worker process from the settings (`ManifestSigner.from_settings`).
It reads the certificate chain and key, checks what C2PA asks of them (a signing certificate that
is not a CA and not self-signed, followed by the CA that issued it; an extended key usage; the
key that belongs to it, of the algorithm's kind), then signs a small test image: any problem
stops start-up as a SettingsError naming the setting.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from PIL import Image

from farm.settings import Settings, SettingsError

CLAIM_GENERATOR = "renderfarm"
GENERATION_LABEL = "com.renderfarm.generation"
ACTIONS_LABEL = "c2pa.actions.v2"
CREATED = "c2pa.created"
IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
TRAINED_ALGORITHMIC_MEDIA = IPTC + "trainedAlgorithmicMedia"
COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA = IPTC + "compositeWithTrainedAlgorithmicMedia"
# Render kinds that start from an existing image: the result is a composite.
COMPOSITE_KINDS = frozenset({"img2img", "inpaint", "outpaint", "upscale"})
PNG_MIME_TYPE = "image/png"

# Whatever reads or signs stays offline: no remote manifests, no OCSP. The farm keeps its own
# thumbnails, so the manifest carries none (a thumbnail would cost a JPEG encode per image).
OFFLINE_VERIFY = {"remote_manifest_fetch": False, "ocsp_fetch": False}
SIGNING_SETTINGS = {"verify": OFFLINE_VERIFY, "builder": {"thumbnail": {"enabled": False}}}

# Which key each algorithm needs (cryptography's class names) and the curve for ECDSA.
_KEY_KIND = {"es256": ("EC", "secp256r1"), "es384": ("EC", "secp384r1"), "es512": ("EC", "secp521r1"),
             "ps256": ("RSA", None), "ps384": ("RSA", None), "ps512": ("RSA", None), "ed25519": ("Ed25519", None)}
CHAIN_KEY, KEY_KEY, ALGORITHM_KEY = "c2pa_cert_chain_path", "c2pa_private_key_path", "c2pa_algorithm"


def farm_version() -> str:
    try:
        return version("renderfarm")
    except PackageNotFoundError:  # running from a checkout that was never installed
        return "0+unknown"


def digital_source_type(kind: str) -> str:
    return COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA if kind in COMPOSITE_KINDS else TRAINED_ALGORITHMIC_MEDIA


@dataclass(frozen=True)
class GenerationFacts:
    """What the manifest says about one render (the `com.renderfarm.generation` assertion)."""

    render_id: int
    job_id: int
    campaign_id: int | None
    kind: str
    models: list[dict[str, Any]] = field(default_factory=list)
    source_asset_id: int | None = None

    @classmethod
    def of_plan(cls, plan) -> "GenerationFacts":
        """From a worker's RenderPlan (farm.jobs.execution): its license chain, when the policy
        gave one, else the checkpoint and its license alone."""
        if plan.license_chain:
            models = [_model_entry(notice) for notice in plan.license_chain]
        else:
            models = [{"name": plan.model_name, "kind": "upscaler" if plan.kind == "upscale" else "checkpoint",
                       "sha256": plan.model_sha256, "license": plan.license_identifier}]
        return cls(render_id=plan.render_id, job_id=plan.job_id, campaign_id=plan.campaign_id, kind=plan.kind,
                   models=models, source_asset_id=plan.upscale.source_asset_id if plan.upscale else None)

    def assertion(self) -> dict[str, Any]:
        data: dict[str, Any] = {"render_id": self.render_id, "job_id": self.job_id,
                                "campaign_id": self.campaign_id, "kind": self.kind, "models": self.models}
        if self.source_asset_id is not None:
            data["source_asset_id"] = self.source_asset_id
        return data


def _model_entry(notice: dict[str, Any]) -> dict[str, Any]:
    """One model of the license chain (a LicenseNotice's dict), as the manifest names it."""
    entry = {"name": notice["model"], "kind": notice.get("kind"), "sha256": notice["sha256"],
             "license": notice["license"], "license_name": notice.get("license_name"),
             "license_url": notice.get("url"), "via": notice.get("via"),
             "attribution": notice.get("attribution"), "use_restrictions": notice.get("use_restrictions") or []}
    return {key: value for key, value in entry.items() if value not in (None, [])}


def manifest_definition(facts: GenerationFacts) -> dict[str, Any]:
    """The manifest definition c2pa's Builder takes for this render."""
    agent = {"name": CLAIM_GENERATOR, "version": farm_version()}
    return {
        "claim_generator_info": [agent],
        "title": f"render-{facts.render_id}.png",
        "format": PNG_MIME_TYPE,
        "assertions": [
            {"label": ACTIONS_LABEL, "data": {"actions": [
                {"action": CREATED, "digitalSourceType": digital_source_type(facts.kind), "softwareAgent": agent},
            ]}},
            {"label": GENERATION_LABEL, "data": facts.assertion()},
        ],
    }


class ManifestSigner:
    """Signs PNGs with one certificate chain and key; one per worker process."""

    def __init__(self, chain_pem: bytes, key_pem: bytes, algorithm: str, timestamp_url: str | None = None):
        import c2pa

        self._c2pa = c2pa
        self.algorithm = algorithm
        self._context = c2pa.Context.from_dict(SIGNING_SETTINGS)
        self._signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(algorithm.encode(), chain_pem, key_pem,
                                                                 timestamp_url or None))

    @classmethod
    def from_settings(cls, settings: Settings) -> "ManifestSigner | None":
        """The signer the settings describe, checked on a test image; None when signing is off.
        Raises SettingsError naming the setting that is wrong."""
        if not settings.c2pa_signing:
            return None
        chain_pem = _read_pem(CHAIN_KEY, settings.c2pa_cert_chain_path)
        key_pem = _read_pem(KEY_KEY, settings.c2pa_private_key_path)
        check_credentials(chain_pem, key_pem, settings.c2pa_algorithm)
        import c2pa

        try:
            signer = cls(chain_pem, key_pem, settings.c2pa_algorithm, settings.c2pa_timestamp_url)
            signer.sign_png(_test_png(), GenerationFacts(render_id=0, job_id=0, campaign_id=None, kind="txt2img"))
        except c2pa.C2paError as error:
            key = "c2pa_timestamp_url" if settings.c2pa_timestamp_url and "time" in str(error).lower() else CHAIN_KEY
            raise SettingsError(key, f"c2pa cannot sign with these credentials: {error}") from None
        return signer

    def sign_png(self, png: bytes, facts: GenerationFacts) -> bytes:
        """The PNG with a signed manifest embedded; every other chunk is kept as it was."""
        builder = self._c2pa.Builder(manifest_definition(facts), context=self._context)
        signed = io.BytesIO()
        with builder:
            builder.sign(self._signer, PNG_MIME_TYPE, io.BytesIO(png), signed)
        return signed.getvalue()

    def close(self) -> None:
        self._signer.close()
        self._context.close()


def _read_pem(key: str, path: str) -> bytes:
    file = Path(path).expanduser()
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise SettingsError(key, f"{file} does not exist") from None
    except OSError as error:
        raise SettingsError(key, f"cannot read {file}: {error.strerror}") from None
    if b"-----BEGIN " not in data:
        raise SettingsError(key, f"{file} is not a PEM file")
    return data


def check_credentials(chain_pem: bytes, key_pem: bytes, algorithm: str) -> None:
    """What C2PA asks of a signing certificate chain and key, checked before c2pa sees them, so
    that each problem is named with its setting (c2pa itself says "the certificate is invalid")."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import ExtensionOID

    try:
        chain = x509.load_pem_x509_certificates(chain_pem)
    except ValueError as error:
        raise SettingsError(CHAIN_KEY, f"holds no readable PEM certificate ({error})") from None
    leaf = chain[0]
    basic = _extension(leaf, ExtensionOID.BASIC_CONSTRAINTS)
    if basic is not None and basic.ca:
        raise SettingsError(CHAIN_KEY, "its first certificate is a CA certificate: the chain starts with the signing "
                                       "(end-entity) certificate, followed by the CAs that issued it")
    if leaf.issuer == leaf.subject:
        raise SettingsError(CHAIN_KEY, "the signing certificate is self-signed: C2PA needs one issued by a CA, "
                                       "followed in the file by that CA's certificate")
    if len(chain) < 2:
        raise SettingsError(CHAIN_KEY, "holds only the signing certificate: append the certificate of the CA "
                                       "that issued it (and any intermediates)")
    for child, issuer in zip(chain, chain[1:]):
        try:
            child.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature) as error:
            raise SettingsError(CHAIN_KEY, f"certificate '{_common_name(child)}' was not issued by the next one in "
                                           f"the file, '{_common_name(issuer)}' ({type(error).__name__}): order them "
                                           "signing certificate first, then each issuer") from None
    now = datetime.now(timezone.utc)
    if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
        raise SettingsError(CHAIN_KEY, f"the signing certificate is valid from {leaf.not_valid_before_utc:%Y-%m-%d} "
                                       f"to {leaf.not_valid_after_utc:%Y-%m-%d}, not now")
    if _extension(leaf, ExtensionOID.AUTHORITY_KEY_IDENTIFIER) is None:
        raise SettingsError(CHAIN_KEY, "the signing certificate has no authority key identifier, which C2PA requires")
    if _extension(leaf, ExtensionOID.EXTENDED_KEY_USAGE) is None:
        raise SettingsError(CHAIN_KEY, "the signing certificate has no extended key usage; C2PA needs one, "
                                       "e.g. emailProtection (1.3.6.1.5.5.7.3.4)")
    if b"-----BEGIN PRIVATE KEY-----" not in key_pem:
        raise SettingsError(KEY_KEY, "must be an unencrypted PKCS#8 PEM key ('BEGIN PRIVATE KEY'); convert one "
                                     "with: openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.pk8")
    try:
        private_key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as error:
        raise SettingsError(KEY_KEY, f"is not a readable private key ({error})") from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if (private_key.public_key().public_bytes(serialization.Encoding.DER, public)
            != leaf.public_key().public_bytes(serialization.Encoding.DER, public)):
        raise SettingsError(KEY_KEY, f"does not belong to the signing certificate '{_common_name(leaf)}' "
                                     f"in {CHAIN_KEY}")
    wanted, found = _key_kind(algorithm), _key_kind_of(private_key)
    if wanted != found:
        raise SettingsError(ALGORITHM_KEY, f"{algorithm} needs {_describe(wanted)}; the key in {KEY_KEY} is "
                                           f"{_describe(found)}")


def _key_kind(algorithm: str) -> tuple[str, str | None]:
    """(key type, curve) that a C2PA signing algorithm needs."""
    return _KEY_KIND[algorithm]


def _key_kind_of(private_key) -> tuple[str, str | None]:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        return "EC", private_key.curve.name
    if isinstance(private_key, rsa.RSAPrivateKey):
        return "RSA", None
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        return "Ed25519", None
    return type(private_key).__name__, None


def _describe(kind: tuple[str, str | None]) -> str:
    name, curve = kind
    return f"an {name} key" + (f" on {curve}" if curve else "")


def _extension(certificate, oid):
    from cryptography import x509

    try:
        return certificate.extensions.get_extension_for_oid(oid).value
    except x509.ExtensionNotFound:
        return None


def _common_name(certificate) -> str:
    from cryptography.x509.oid import NameOID

    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else certificate.subject.rfc4514_string()


def _test_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buffer, format="PNG")
    return buffer.getvalue()

