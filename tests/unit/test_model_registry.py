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
