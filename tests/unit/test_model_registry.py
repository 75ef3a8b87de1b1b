import hashlib
import shutil

import pytest
import torch
from safetensors.torch import save_file
from sqlalchemy import func, select

from farm.db.models import AuditEvent, RegisteredModel
from farm.db.session import transaction
from farm.errors import InvalidInput
from farm.models.registry import get_model, model_sha256, register_model


@pytest.fixture
def lora_file(tmp_path):
    path = tmp_path / "brand-style.safetensors"
    save_file({"lora_up.weight": torch.ones(4, 2)}, str(path))
    return path


def test_registering_a_safetensors_file_records_hash_license_and_audit(embedded_farm, lora_file):
    with transaction(embedded_farm.session_factory) as session:
        model = register_model(session, name="brand-style", kind="lora", path=lora_file,
                               license_identifier="CreativeML-OpenRAIL-M", architecture="sd1",
                               base_model_name="tiny-sd", source_url="https://example.invalid/lora",
                               model_folders=[lora_file.parent])
        expected = hashlib.sha256(lora_file.read_bytes()).hexdigest()
        assert model.sha256 == expected
        assert model.short_hash == expected[:10]
        assert model.base_model.name == "tiny-sd"
        event = session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).first()
        assert event.action == "model.registered" and event.after["sha256"] == expected


def test_tiny_model_is_registered_with_its_folder_hash(embedded_farm):
    with transaction(embedded_farm.session_factory) as session:
        model = get_model(session, "tiny-sd")
        assert model.architecture == "sd1" and model.kind == "checkpoint"
        assert model.license.identifier == "Apache-2.0"
        assert model.sha256 == model_sha256(embedded_farm.settings.models_dir / "tiny-sd")


def test_folder_hash_changes_when_any_component_changes(tiny_model_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy)
    assert model_sha256(copy) == model_sha256(tiny_model_dir)
    config = copy / "scheduler" / "scheduler_config.json"
    config.write_text(config.read_text().replace("}", ', "x": 1}', 1))
    assert model_sha256(copy) != model_sha256(tiny_model_dir)


@pytest.mark.parametrize("suffix", [".ckpt", ".pt", ".bin"])
def test_pickle_checkpoints_are_refused(embedded_farm, tmp_path, suffix):
    path = tmp_path / f"model{suffix}"
    path.write_bytes(b"not loaded")
    with pytest.raises(InvalidInput) as caught:
        with transaction(embedded_farm.session_factory) as session:
            register_model(session, name="evil", kind="checkpoint", path=path,
                           license_identifier="Apache-2.0", architecture="sd1", model_folders=[tmp_path])
    assert caught.value.field == "path" and "pickle" in caught.value.message


@pytest.mark.parametrize("changes, field", [
    ({"license_identifier": "WTFPL-9"}, "license"),
    ({"kind": "hypernetwork"}, "kind"),
    ({"name": " "}, "name"),
    ({"name": "tiny-sd"}, "name"),
    ({"architecture": "flux"}, "architecture"),
    ({"base_model_name": "missing"}, "base"),
])
def test_bad_registration_names_the_field_and_writes_nothing(embedded_farm, lora_file, changes, field):
    arguments = dict(name="brand-style", kind="lora", path=lora_file, base_model_name="tiny-sd",
                     license_identifier="Apache-2.0", architecture="sd1", model_folders=[lora_file.parent])
    arguments.update(changes)
    with transaction(embedded_farm.session_factory) as session:
        before = session.scalar(select(func.count(RegisteredModel.id)))  # tiny-sd and lanczos
    with pytest.raises(InvalidInput) as caught:
        with transaction(embedded_farm.session_factory) as session:
            register_model(session, **arguments)
    assert caught.value.field == field
    with transaction(embedded_farm.session_factory) as session:
        assert session.scalar(select(func.count(RegisteredModel.id))) == before == 2


def test_missing_path_is_refused(embedded_farm, tmp_path):
    with pytest.raises(InvalidInput) as caught:
        with transaction(embedded_farm.session_factory) as session:
            register_model(session, name="x", kind="vae", path=tmp_path / "nope.safetensors",
                           license_identifier="Apache-2.0", architecture="sd1", model_folders=[tmp_path])
    assert caught.value.field == "path"


# -- what registration refuses, with the configured model folders ------------------------------------

def _register(farm, path, **fields):
    arguments = dict(name="candidate", kind="vae", license_identifier="Apache-2.0", architecture="sd1")
    arguments.update(fields)
    with transaction(farm.session_factory) as session:
        return register_model(session, path=path, model_folders=farm.settings.allowed_model_folders, **arguments)


def _weights(path, value=1.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"w": torch.full((2, 2), value)}, str(path))
    return path


def _refused(farm, path, field="path", **fields) -> str:
    with transaction(farm.session_factory) as session:
        before = session.scalar(select(func.count(RegisteredModel.id)))
    with pytest.raises(InvalidInput) as caught:
        _register(farm, path, **fields)
    assert caught.value.field == field
    with transaction(farm.session_factory) as session:
        assert session.scalar(select(func.count(RegisteredModel.id))) == before
    return caught.value.message


def test_a_path_outside_the_model_folders_is_refused_however_it_is_spelled(embedded_farm, tmp_path):
    models = embedded_farm.settings.models_dir
    outside = _weights(tmp_path / "outside.safetensors")
    assert "outside the model folders" in _refused(embedded_farm, outside)
    # ../ out of the folder
    assert "outside the model folders" in _refused(embedded_farm, models / ".." / ".." / "outside.safetensors")
    # a symlink inside the folder to a file outside it
    (models / "link.safetensors").symlink_to(outside)
    message = _refused(embedded_farm, models / "link.safetensors")
    assert "resolves to" in message and str(outside) in message
    # a diffusers-style folder inside whose file links outside
    folder = models / "vae-folder"
    folder.mkdir()
    (folder / "diffusion_pytorch_model.safetensors").symlink_to(outside)
    assert "links to" in _refused(embedded_farm, folder)
    # the folder itself is not a model
    assert "outside the model folders" in _refused(embedded_farm, models)


def test_a_folder_named_in_the_model_folders_setting_is_allowed(embedded_farm, tmp_path):
    extra = tmp_path / "shared-models"
    settings = embedded_farm.settings.model_copy(update={"model_folders": [extra]})
    path = _weights(extra / "vae.safetensors")
    with transaction(embedded_farm.session_factory) as session:
        model = register_model(session, path=path, model_folders=settings.allowed_model_folders, name="shared-vae",
                               kind="vae", license_identifier="Apache-2.0", architecture="sd1")
        assert model.uri == str(path.resolve())


@pytest.mark.parametrize("name", ["model.ckpt", "model.pt", "model.bin", "model.pth", "MODEL.CKPT"])
def test_pickle_files_in_a_model_folder_are_refused(embedded_farm, name):
    path = embedded_farm.settings.models_dir / name
    path.write_bytes(b"\x80\x04not loaded")
    assert "pickle" in _refused(embedded_farm, path)


def test_a_diffusers_folder_holding_pickle_weights_is_refused(embedded_farm, tiny_model_dir):
    folder = embedded_farm.settings.models_dir / "mixed"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"\x80\x04not loaded")
    message = _refused(embedded_farm, folder, kind="checkpoint", architecture=None)
    assert "pickle" in message and "unet/diffusion_pytorch_model.bin" in message


def test_lora_bases_duplicates_and_unknown_licenses_are_refused(embedded_farm):
    models = embedded_farm.settings.models_dir
    lora = _weights(models / "loras" / "style.safetensors", 3.0)
    assert "needs --base" in _refused(embedded_farm, lora, field="base", kind="lora", architecture=None)
    assert "unknown model" in _refused(embedded_farm, lora, field="base", kind="lora", base_model_name="nope")
    assert "must be a checkpoint" in _refused(embedded_farm, lora, field="base", kind="lora",
                                              base_model_name="lanczos")
    assert "sd1, not sdxl" in _refused(embedded_farm, lora, field="architecture", kind="lora",
                                       base_model_name="tiny-sd", architecture="sdxl")
    assert "unknown license" in _refused(embedded_farm, lora, field="license", kind="lora",
                                         base_model_name="tiny-sd", license_identifier="LicenseRef-Nope")
    assert "source" == _refused_field(embedded_farm, lora, kind="lora", base_model_name="tiny-sd",
                                      source_url="ftp://example.invalid/x")
    model = _register(embedded_farm, lora, name="style", kind="lora", base_model_name="tiny-sd", architecture=None)
    assert model.architecture == "sd1"
    # The same weights under another name (and perhaps another license) are refused.
    message = _refused(embedded_farm, lora, name="style-again", kind="lora", base_model_name="tiny-sd",
                       license_identifier="LicenseRef-Proprietary-Internal")
    assert "registered already, as 'style' under Apache-2.0" in message


def _refused_field(farm, path, **fields) -> str:
    with pytest.raises(InvalidInput) as caught:
        _register(farm, path, **fields)
    return caught.value.field


def test_registration_records_who_when_hashes_and_audits(embedded_farm):
    from farm.accounts.service import create_user

    path = _weights(embedded_farm.settings.models_dir / "vae.safetensors", 7.0)
    with transaction(embedded_farm.session_factory) as session:
        admin = create_user(session, name="root-admin", role="admin")
        model = register_model(session, path=path, model_folders=embedded_farm.settings.allowed_model_folders,
                               name="vae-7", kind="vae", license_identifier="Apache-2.0", architecture="sd1",
                               source_url="https://example.invalid/vae", added_by=admin)
        expected = hashlib.sha256(path.read_bytes()).hexdigest()
        assert (model.sha256, model.short_hash, model.added_by_id) == (expected, expected[:10], admin.id)
        assert model.created_at is not None
        event = session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).first()
        assert (event.action, event.actor_name, event.after["short_hash"], event.after["source_url"]) == (
            "model.registered", "root-admin", expected[:10], "https://example.invalid/vae")
