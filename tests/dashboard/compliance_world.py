"""A farm for the license, model and audit page and API tests: one user per role, a commercial
campaign every role is a member of, and helpers to register checkpoints (copies of the tiny model
with a note file of their own, so each has its own hash), submit jobs and render them through the
worker's code path (farm.jobs.execution) on the tiny model.

Module-scoped: a test that changes a model registers one of its own (`world.checkpoint(...)`).
"""

from __future__ import annotations

import itertools
import shutil
from dataclasses import dataclass, field

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from farm.accounts.service import issue_api_token
from farm.campaigns.service import add_member, create_campaign_as
from farm.context import FarmContext, prepare_database
from farm.db.models import ROLES, Asset, Render, User
from farm.db.session import transaction
from farm.jobs.batch import BatchRequest, submit_batch
from farm.jobs.execution import Outcome, execute_render
from farm.queue.runtime import build_worker_context
from farm.render.tiny_model import TINY_MODEL_NAME
from farm.settings import load_settings
from farm.templates.service import create_campaign_template
from tests.dashboard.conftest import add_user, csrf_token, make_app, sign_in
from tests.unit.compliance_world import FAST, checkpoint_copy, register

NON_COMMERCIAL = "LicenseRef-Stability-AI-Non-Commercial-Research"
_numbers = itertools.count(1)


@dataclass
class ComplianceWorld:
    farm: FarmContext
    app: Flask
    users: dict[str, User]
    campaign_id: int               # commercial; every role is a member
    noncommercial_id: int          # non-commercial; every role is a member
    versions: dict[int, int]       # campaign id -> template version id
    _clients: dict[str, FlaskClient] = field(default_factory=dict)
    _tokens: dict[str, str] = field(default_factory=dict)
    _worker: object = None

    def client(self, role: str) -> FlaskClient:
        if role not in self._clients:
            client = self.app.test_client()
            assert sign_in(client, self.users[role].name).status_code == 302
            self._clients[role] = client
        return self._clients[role]

    def post(self, role: str, url: str, data: dict | None = None, **kwargs):
        """A form POST as the role's user, with the session's CSRF token."""
        client = self.client(role)
        return client.post(url, data={"csrf_token": csrf_token(client), **(data or {})}, **kwargs)

    def api(self, role: str) -> dict[str, str]:
        if role not in self._tokens:
            with transaction(self.farm.session_factory) as session:
                self._tokens[role] = issue_api_token(session, self.users[role])
        return {"Authorization": f"Bearer {self._tokens[role]}"}

    def checkpoint(self, name: str | None = None, license_identifier: str = "Apache-2.0") -> tuple[int, str]:
        """Register a checkpoint of its own; (model id, name)."""
        name = name or f"ckpt-{next(_numbers)}"
        path = checkpoint_copy(self.farm.settings.models_dir, name, name)
        return register(self.farm, self.users["admin"], name=name, kind="checkpoint",
                        license_identifier=license_identifier, path=path), name

    def submit(self, model: str, seeds=(1,), campaign_id: int | None = None) -> int:
        campaign_id = campaign_id or self.noncommercial_id
        return submit_batch(self.farm, self.users["campaign_manager"], BatchRequest(
            campaign_id=campaign_id, template_version_id=self.versions[campaign_id], rows=[{"product": "shoe"}],
            seeds=list(seeds), params={**FAST, "model": model})).job_id

    def renders(self, job_id: int) -> list[Render]:
        with transaction(self.farm.session_factory) as session:
            return list(session.scalars(select(Render).where(Render.job_id == job_id).order_by(Render.index)))

    def render(self, job_id: int) -> list[int]:
        """Render the job's renders in this process; the asset ids."""
        if self._worker is None:
            self._worker = build_worker_context(self.farm.settings, worker_name="compliance-worker")
        ids = [render.id for render in self.renders(job_id)]
        assert [execute_render(self._worker, render_id) for render_id in ids] == [Outcome.SUCCEEDED] * len(ids)
        with transaction(self.farm.session_factory) as session:
            return list(session.scalars(select(Asset.id).where(Asset.render_id.in_(ids)).order_by(Asset.id)))

    def asset(self, asset_id: int) -> Asset:
        with transaction(self.farm.session_factory) as session:
            return session.get(Asset, asset_id)


def build_world(farm: FarmContext) -> ComplianceWorld:
    users = {role: add_user(farm, role, name=f"{role}-compliance") for role in ROLES}
    ids, versions = [], {}
    owner = users["campaign_manager"]
    with transaction(farm.session_factory) as session:
        for name, commercial in (("Commercial launch", True), ("Research moodboard", False)):
            campaign_id = create_campaign_as(session, owner, name=name, brand="Acme", commercial_use=commercial).id
            for role in ROLES:
                if users[role].id != owner.id:
                    add_member(session, owner, campaign_id, users[role].id)
            versions[campaign_id] = create_campaign_template(
                session, owner, campaign_id, name="hero", body="a {{ product }}", variables=["product"],
                default_params=FAST).id
            ids.append(campaign_id)
    return ComplianceWorld(farm=farm, app=make_app(farm), users=users, campaign_id=ids[0], noncommercial_id=ids[1],
                           versions=versions)


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_model_dir) -> ComplianceWorld:
    home = tmp_path_factory.mktemp("compliance") / "farm-data"
    shutil.copytree(tiny_model_dir, home / "models" / TINY_MODEL_NAME)
    farm = FarmContext(load_settings({"FARM_HOME": str(home)}))
    prepare_database(farm)
    yield build_world(farm)
    farm.db_engine.dispose()
