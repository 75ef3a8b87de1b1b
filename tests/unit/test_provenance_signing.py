"""C2PA signing (farm.provenance.manifest) and reading (farm.provenance.reading) on PNGs written
as a worker writes them, with a throwaway CA made at test time."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID
from PIL import Image

from farm.provenance.manifest import (COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA, TRAINED_ALGORITHMIC_MEDIA,
                                      GenerationFacts, ManifestSigner, farm_version)
from farm.provenance.reading import read_manifest, read_provenance
from farm.render.png import encode_png, read_png_text
from farm.settings import REPO_ROOT, SettingsError, load_settings
from tests.fixtures.certificates import Authority, key_pem, new_key, pem, write_signing_files
from tests.unit.provenance_helpers import signing_settings, with_pixel_changed, with_text_replaced

INFOTEXT = "a lighthouse at dusk\nNegative prompt: fog\nSteps: 3, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 64x64"
FARM_CHUNK = {"render_id": 17, "job_id": 5, "model": "tiny-sd", "model_sha256": "ab" * 32, "license": "CreativeML-OpenRAIL-M"}
MODELS = [{"name": "tiny-sd", "kind": "checkpoint", "sha256": "ab" * 32, "license": "CreativeML-OpenRAIL-M"},
          {"name": "film-grain", "kind": "lora", "sha256": "cd" * 32, "license": "Apache-2.0"}]


@pytest.fixture(scope="module")
def authority() -> Authority:
    return Authority.create()


@pytest.fixture(scope="module")
def files(authority, tmp_path_factory):
    return write_signing_files(tmp_path_factory.mktemp("c2pa"), authority)


@pytest.fixture(scope="module")
def signer(files) -> ManifestSigner:
    return ManifestSigner.from_settings(signing_settings(files))


def _render_png() -> bytes:
    image = Image.effect_noise((64, 64), 60).convert("RGB")
    return encode_png(image, INFOTEXT, FARM_CHUNK)


def _facts(kind: str = "txt2img") -> GenerationFacts:
    return GenerationFacts(render_id=17, job_id=5, campaign_id=3, kind=kind, models=MODELS,
                           source_asset_id=9 if kind == "upscale" else None)


def test_a_signed_png_keeps_its_text_chunks_and_its_manifest_validates(signer):
    png = _render_png()
    signed = signer.sign_png(png, _facts())
    # The text chunks are written first and survive signing, byte for byte.
    assert read_png_text(signed) == read_png_text(png)
    assert json.loads(read_png_text(signed)["farm"]) == FARM_CHUNK
    with Image.open(io.BytesIO(signed)) as image, Image.open(io.BytesIO(png)) as original:
        assert image.tobytes() == original.tobytes()

    manifest = read_manifest(signed)
    assert manifest["validation"]["state"] == "Valid"  # intact; no trust anchor given
    assert manifest["validation"]["valid"] and not manifest["validation"]["trusted"]
    assert [f["code"] for f in manifest["validation"]["failures"]] == ["signingCredential.untrusted"]
    assert manifest["claim_generator"] == f"renderfarm/{farm_version()}"
    assert manifest["actions"] == [{"action": "c2pa.created", "digital_source_type": TRAINED_ALGORITHMIC_MEDIA,
                                    "software_agent": f"renderfarm/{farm_version()}"}]
    assert manifest["generation"] == {"render_id": 17, "job_id": 5, "campaign_id": 3, "kind": "txt2img",
                                      "models": MODELS}
    assert manifest["signer"]["common_name"] == "Render Farm Signer"
    assert manifest["signer"]["algorithm"].lower() == "es256"


def test_the_signer_is_trusted_when_its_ca_is_a_trust_anchor(signer, files):
    signed = signer.sign_png(_render_png(), _facts())
    manifest = read_manifest(signed, files.ca.read_text())
    assert manifest["validation"] == {"state": "Trusted", "valid": True, "trusted": True, "failures": []}
    other_ca = pem(Authority.create("Another CA").certificate).decode()
    assert read_manifest(signed, other_ca)["validation"]["state"] == "Valid"


@pytest.mark.parametrize("kind, source_type", [
    ("txt2img", TRAINED_ALGORITHMIC_MEDIA),
    ("img2img", COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA),
    ("inpaint", COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA),
    ("outpaint", COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA),
    ("upscale", COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA),
])
def test_the_digital_source_type_follows_the_render_kind(signer, kind, source_type):
    manifest = read_manifest(signer.sign_png(_render_png(), _facts(kind)))
    assert manifest["validation"]["valid"]
    assert [a["digital_source_type"] for a in manifest["actions"]] == [source_type]
    assert manifest["generation"]["kind"] == kind
    assert manifest["generation"].get("source_asset_id") == (9 if kind == "upscale" else None)


@pytest.mark.parametrize("tamper", [
    pytest.param(with_pixel_changed, id="one pixel changed"),
    pytest.param(lambda png: with_text_replaced(png, b"lighthouse", b"lightHOUSE"), id="prompt edited"),
    pytest.param(lambda png: with_text_replaced(png, b'"render_id":17', b'"render_id":18'), id="farm chunk edited"),
])
def test_an_image_changed_after_signing_fails_validation(signer, files, tamper):
    signed = signer.sign_png(_render_png(), _facts())
    tampered = tamper(signed)
    assert tampered != signed
    for anchors in (None, files.ca.read_text()):
        validation = read_manifest(tampered, anchors)["validation"]
        assert validation["state"] == "Invalid" and not validation["valid"]
        mismatch = [f for f in validation["failures"] if f["code"] == "assertion.dataHash.mismatch"]
        assert mismatch and "changed after it was signed" in mismatch[0]["explanation"]


def test_a_png_without_a_manifest_reads_as_none(signer):
    report = read_provenance(_render_png())
    assert report["c2pa"] is None
    assert report["parameters"] == INFOTEXT and report["farm"] == FARM_CHUNK
    assert report["watermark"] is None


@pytest.mark.parametrize("algorithm, key_kind", [("es256", "ec-p256"), ("es384", "ec-p384"), ("ps256", "rsa"),
                                                 ("ed25519", "ed25519")])
def test_each_algorithm_signs_with_its_kind_of_key(authority, tmp_path, algorithm, key_kind):
    files = write_signing_files(tmp_path, authority, key=new_key(key_kind))
    signer = ManifestSigner.from_settings(signing_settings(files, FARM_C2PA_ALGORITHM=algorithm))
    manifest = read_manifest(signer.sign_png(_render_png(), _facts()), files.ca.read_text())
    assert manifest["validation"]["state"] == "Trusted"
    assert manifest["signer"]["algorithm"].lower() == algorithm


# -- start-up checks: each bad credential names its setting --------------------------------------

def _bad_files(case: str, authority: Authority, folder: Path):
    key, certificate = authority.issue()
    ca = pem(authority.certificate)
    if case == "missing chain":
        files = write_signing_files(folder, authority)
        files.chain.unlink()
    elif case == "missing key":
        files = write_signing_files(folder, authority)
        files.key.unlink()
    elif case == "chain not PEM":
        files = write_signing_files(folder, authority, chain=b"\x00\x01 not a certificate")
    elif case == "key not PEM":
        files = write_signing_files(folder, authority, key_bytes=b"hunter2")
    elif case == "CA certificate first":
        files = write_signing_files(folder, authority, key=key, certificate=certificate,
                                    chain=ca + pem(certificate))
    elif case == "self-signed signing certificate":
        key, certificate = authority.issue(self_signed=True)
        files = write_signing_files(folder, authority, key=key, certificate=certificate, chain=pem(certificate))
    elif case == "signing certificate alone":
        files = write_signing_files(folder, authority, key=key, certificate=certificate, chain=pem(certificate))
    elif case == "issued by another CA":
        files = write_signing_files(folder, authority, key=key, certificate=certificate,
                                    chain=pem(certificate) + pem(Authority.create("Another CA").certificate))
    elif case == "expired":
        key, certificate = authority.issue(valid_days=(-30, -1))
        files = write_signing_files(folder, authority, key=key, certificate=certificate)
    elif case == "no extended key usage":
        key, certificate = authority.issue(eku=None)
        files = write_signing_files(folder, authority, key=key, certificate=certificate)
    elif case == "an extended key usage c2pa refuses":
        key, certificate = authority.issue(eku=(ExtendedKeyUsageOID.SERVER_AUTH,))
        files = write_signing_files(folder, authority, key=key, certificate=certificate)
    elif case == "another certificate's key":
        files = write_signing_files(folder, authority, key=key, certificate=certificate,
                                    key_bytes=key_pem(new_key()))
    elif case == "key not PKCS#8":
        files = write_signing_files(folder, authority, key=key, certificate=certificate,
                                    key_bytes=key_pem(key, pkcs8=False))
    else:
        raise AssertionError(case)
    return files


@pytest.mark.parametrize("case, setting, message", [
    ("missing chain", "c2pa_cert_chain_path", "does not exist"),
    ("missing key", "c2pa_private_key_path", "does not exist"),
    ("chain not PEM", "c2pa_cert_chain_path", "not a PEM file"),
    ("key not PEM", "c2pa_private_key_path", "not a PEM file"),
    ("CA certificate first", "c2pa_cert_chain_path", "is a CA certificate"),
    ("self-signed signing certificate", "c2pa_cert_chain_path", "self-signed"),
    ("signing certificate alone", "c2pa_cert_chain_path", "append the certificate of the CA"),
    ("issued by another CA", "c2pa_cert_chain_path", "was not issued by the next one"),
    ("expired", "c2pa_cert_chain_path", "not now"),
    ("no extended key usage", "c2pa_cert_chain_path", "no extended key usage"),
    ("an extended key usage c2pa refuses", "c2pa_cert_chain_path", "c2pa cannot sign"),
    ("another certificate's key", "c2pa_private_key_path", "does not belong to the signing certificate"),
    ("key not PKCS#8", "c2pa_private_key_path", "PKCS#8"),
])
def test_bad_signing_credentials_stop_start_up_naming_the_setting(authority, tmp_path, case, setting, message):
    files = _bad_files(case, authority, tmp_path)
    with pytest.raises(SettingsError) as caught:
        ManifestSigner.from_settings(signing_settings(files))
    assert caught.value.field == setting
    assert message in caught.value.message


def test_an_algorithm_that_does_not_fit_the_key_names_c2pa_algorithm(files):
    with pytest.raises(SettingsError) as caught:
        ManifestSigner.from_settings(signing_settings(files, FARM_C2PA_ALGORITHM="ps256"))
    assert caught.value.field == "c2pa_algorithm"
    assert "ps256 needs an RSA key" in caught.value.message and "EC key on secp256r1" in caught.value.message


# -- settings --------------------------------------------------------------------------------------

@pytest.mark.parametrize("environ, key", [
    ({"FARM_C2PA_SIGNING": "true"}, "c2pa_cert_chain_path"),
    ({"FARM_C2PA_SIGNING": "true", "FARM_C2PA_CERT_CHAIN_PATH": "/x/chain.pem"}, "c2pa_private_key_path"),
    ({"FARM_C2PA_ALGORITHM": "rs256"}, "FARM_C2PA_ALGORITHM"),
    ({"FARM_C2PA_TIMESTAMP_URL": "ftp://tsa.example"}, "FARM_C2PA_TIMESTAMP_URL"),
    ({"FARM_WATERMARK": "rivaGan"}, "FARM_WATERMARK"),
    ({"FARM_WATERMARK_FARM_ID": "ACME"}, "FARM_WATERMARK_FARM_ID"),
])
def test_bad_provenance_settings_name_the_key(tmp_path, environ, key):
    with pytest.raises(SettingsError) as caught:
        load_settings({"FARM_HOME": str(tmp_path), **environ})
    assert caught.value.field == key


def test_signing_is_off_by_default_and_on_in_production(tmp_path):
    default = load_settings({"FARM_HOME": str(tmp_path)})
    assert (default.c2pa_signing, default.watermark) == (False, "off")
    assert ManifestSigner.from_settings(default) is None
    production = load_settings({"FARM_CONFIG": str(REPO_ROOT / "configs" / "production.yaml")})
    assert production.c2pa_signing is True
    assert production.c2pa_cert_chain_path and production.c2pa_private_key_path
    assert production.c2pa_timestamp_url == ""

