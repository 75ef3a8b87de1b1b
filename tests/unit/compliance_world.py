"""A farm for license-compliance tests: one checkpoint, LoRA, VAE and upscaler under each seeded
license, users, a commercial and a non-commercial campaign, and one rendered asset in each.

Models are small real files (safetensors; checkpoints are copies of the tiny model with a note
file, so each has a hash of its own), registered through the registry like any other.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file
from sqlalchemy import select

from farm.accounts.service import create_user
from farm.campaigns.service import create_campaign_as
from farm.context import FarmContext, prepare_database
from farm.db.models import Asset, Render, User
from farm.db.session import transaction
from farm.jobs.batch import BatchRequest, submit_batch
from farm.jobs.execution import Outcome, execute_render
from farm.models.registry import register_model
from farm.queue.runtime import build_worker_context
from farm.render.tiny_model import TINY_MODEL_NAME
from farm.settings import load_settings
from farm.templates.service import create_campaign_template

# (identifier, short name, the rule that refuses it in a commercial campaign, None: allowed)
LICENSES = [
    ("CreativeML-OpenRAIL-M", "openrail", None),
    ("LicenseRef-CreativeML-OpenRAIL-PlusPlus-M", "openrailpp", None),
    ("LicenseRef-Stability-AI-Community", "community", None),  # the world declares USD 500,000 revenue
    ("LicenseRef-Stability-AI-Non-Commercial-Research", "ncresearch", "commercial_use_forbidden"),
    ("LicenseRef-FLUX.1-dev-Non-Commercial", "fluxdev", "separate_license_required"),
    ("Apache-2.0", "apache", None),
    ("LicenseRef-Proprietary-Internal", "internal", None),
]
DECLARED_REVENUE = 500_000
FAST = {"steps": 2, "width": 64, "height": 64}


def weights(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"weight": torch.full((4, 4), float(seed))}, str(path))
    return path


def checkpoint_copy(models_dir: Path, name: str, note: str) -> Path:
    """A copy of the tiny model with a note file of its own: a checkpoint with a hash of its own."""
    path = models_dir / name
    shutil.copytree(models_dir / TINY_MODEL_NAME, path)
    (path / "NOTE.txt").write_text(note)
    return path


@dataclasses.dataclass
class World:
    farm: FarmContext
    admin: User
    manager: User
    commercial_id: int
    noncommercial_id: int
    versions: dict[int, int]             # campaign id -> template version id
    source_assets: dict[int, int]        # campaign id -> an asset rendered in it (tiny-sd, Apache-2.0)

    def batch(self, campaign_id: int, seeds=(1,), **params) -> BatchRequest:
        return BatchRequest(campaign_id=campaign_id, template_version_id=self.versions[campaign_id],
                            rows=[{"product": "shoe"}], seeds=list(seeds), params={**FAST, **params})


def register(farm: FarmContext, admin: User | None, **fields):
    with transaction(farm.session_factory) as session:
        actor = session.get(User, admin.id) if admin else None
        return register_model(session, model_folders=farm.settings.allowed_model_folders, added_by=actor,
                              **fields).id


def build_world(home: Path, tiny_model_dir: Path, **environ: str) -> World:
    shutil.copytree(tiny_model_dir, home / "models" / TINY_MODEL_NAME)
    settings = load_settings({"FARM_HOME": str(home),
                              "FARM_ORGANISATION_ANNUAL_REVENUE_USD": str(DECLARED_REVENUE), **environ})
    farm = FarmContext(settings)
    prepare_database(farm)
    models_dir = settings.models_dir
    with transaction(farm.session_factory) as session:
        admin = create_user(session, name="root-admin", role="admin")
        manager = create_user(session, name="ana", role="campaign_manager")
        ids, versions = [], {}
        for name, commercial in (("Commercial", True), ("Non-commercial", False)):
            campaign_id = create_campaign_as(session, manager, name=name, brand="Acme", commercial_use=commercial).id
            versions[campaign_id] = create_campaign_template(
                session, manager, campaign_id, name="hero", body="a {{ product }}", variables=["product"],
                default_params=FAST).id
            ids.append(campaign_id)
    for seed, (identifier, short, _) in enumerate(LICENSES, start=1):
        register(farm, admin, name=f"ckpt-{short}", kind="checkpoint", license_identifier=identifier,
                 path=checkpoint_copy(models_dir, f"ckpt-{short}", short))
        register(farm, admin, name=f"lora-{short}", kind="lora", license_identifier=identifier, base_model_name="tiny-sd",
                 path=weights(models_dir / "loras" / f"{short}.safetensors", seed))
        register(farm, admin, name=f"vae-{short}", kind="vae", license_identifier=identifier, architecture="sd1",
                 path=weights(models_dir / "vaes" / f"{short}.safetensors", 100 + seed))
        register(farm, admin, name=f"up-{short}", kind="upscaler", license_identifier=identifier,
                 path=weights(models_dir / "upscalers" / f"{short}.safetensors", 200 + seed))
    # A permissive LoRA trained on the non-commercial checkpoint: it carries that checkpoint's terms.
    register(farm, admin, name="lora-on-ncresearch", kind="lora", license_identifier="Apache-2.0",
             base_model_name="ckpt-ncresearch", path=weights(models_dir / "loras" / "on-nc.safetensors", 999))

    worker = build_worker_context(settings, worker_name="world-worker")
    source_assets = {}
    for campaign_id in ids:
        submitted = submit_batch(farm, manager, BatchRequest(
            campaign_id=campaign_id, template_version_id=versions[campaign_id], rows=[{"product": "hat"}],
            seeds=[5], params=FAST))
        with transaction(farm.session_factory) as session:
            render_id = session.scalar(select(Render.id).where(Render.job_id == submitted.job_id))
        assert execute_render(worker, render_id) is Outcome.SUCCEEDED
        with transaction(farm.session_factory) as session:
            source_assets[campaign_id] = session.scalar(select(Asset.id).where(Asset.render_id == render_id))
    return World(farm=farm, admin=admin, manager=manager, commercial_id=ids[0], noncommercial_id=ids[1],
                 versions=versions, source_assets=source_assets)
