"""A farm with real assets for the gallery, asset, review and export page tests.

Assets are rendered on the tiny model (64x64, 2 steps) through the worker's own code path
(farm.jobs.execution, in this process): jobs are submitted as the dashboard submits them
(farm.jobs.batch.submit_batch), so every asset has a real job, template version, model,
license, stored PNG and thumbnail. Use `world.assets(...)` for fresh assets a test may change.
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
from farm.render.tiny_model import TINY_MODEL_NAME
from farm.settings import load_settings
from farm.templates.service import create_campaign_template
from tests.dashboard.conftest import add_user, make_app, sign_in
from tests.fixtures.assets import AssetMaker

TINY = {"model": "tiny-sd", "steps": 2, "width": 64, "height": 64}
_names = itertools.count(1)


@dataclass
class World:
    farm: FarmContext
    app: Flask
    users: dict[str, User]          # one per role, all members of `campaign`; "outsider": a reviewer of none
    campaign_id: int                # every role's user may see it
    hidden_campaign_id: int         # owned by the admin: only admins, ops and auditors see it
    maker: AssetMaker
    versions: dict[int, int] = field(default_factory=dict)  # campaign id -> template version id
    _clients: dict[str, FlaskClient] = field(default_factory=dict)
    _tokens: dict[str, str] = field(default_factory=dict)

    def campaign(self, name: str | None = None, *, members: bool = True, formats: list[str] | None = None) -> int:
        """A new campaign owned by the campaign manager with every role's user a member; or, not
        `members`, owned by the admin with no members (only admins, ops and auditors see it)."""
        owner = self.users["campaign_manager" if members else "admin"]
        with transaction(self.farm.session_factory) as session:
            campaign_id = create_campaign_as(session, owner, name=name or f"Campaign {next(_names)}", brand="Acme",
                                             channel_formats=formats or []).id
            if members:
                for role in ROLES:
                    if self.users[role].id != owner.id:
                        add_member(session, owner, campaign_id, self.users[role].id)
            self.versions[campaign_id] = create_campaign_template(
                session, owner, campaign_id, name="product shot", body="{{ product }} on {{ background }}",
                negative_body="blurry", variables=["product", "background"], default_params=TINY).id
        return campaign_id

    def submit(self, campaign_id: int, products: list[str], seeds: list[int], formats: list[str] | None = None) -> int:
        return submit_batch(self.farm, self.users["admin"], BatchRequest(
            campaign_id=campaign_id, template_version_id=self.versions[campaign_id],
            rows=[{"product": p, "background": "sand"} for p in products], seeds=seeds, formats=formats or [],
        )).job_id

    def render_job(self, job_id: int) -> list[int]:
        with transaction(self.farm.session_factory) as session:
            render_ids = list(session.scalars(select(Render.id).where(Render.job_id == job_id).order_by(Render.index)))
        return self.maker.run(render_ids)

    def assets(self, count: int = 1, campaign_id: int | None = None, *, products: list[str] | None = None,
               formats: list[str] | None = None) -> list[int]:
        """`count` fresh assets (one job) in the campaign (default: the shared one), oldest first."""
        products = products or ["shoe"]
        seeds = list(range(1, count // len(products) + 1))
        return self.render_job(self.submit(campaign_id or self.campaign_id, products, seeds, formats))

    def client(self, role: str) -> FlaskClient:
        """A client signed in through the form as the role's user (one per role, kept)."""
        if role not in self._clients:
            client = self.app.test_client()
            assert sign_in(client, self.users[role].name).status_code == 302
            self._clients[role] = client
        return self._clients[role]

    def fresh_client(self, role: str) -> FlaskClient:
        client = self.app.test_client()
        assert sign_in(client, self.users[role].name).status_code == 302
        return client

    def token(self, role: str) -> str:
        if role not in self._tokens:
            with transaction(self.farm.session_factory) as session:
                self._tokens[role] = issue_api_token(session, self.users[role])
        return self._tokens[role]

    def api(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(role)}"}

    def state(self, asset_id: int) -> str:
        with transaction(self.farm.session_factory) as session:
            return session.get(Asset, asset_id).approval_state


def build_world(farm: FarmContext, app: Flask | None = None) -> World:
    users = {role: add_user(farm, role, name=f"{role}-review") for role in ROLES}
    users["outsider"] = add_user(farm, "reviewer", name="outsider-review")
    world = World(farm=farm, app=app or make_app(farm), users=users, campaign_id=0, hidden_campaign_id=0,
                  maker=AssetMaker(farm))
    world.campaign_id = world.campaign("Spring launch", formats=["instagram_square", "linkedin"])
    world.hidden_campaign_id = world.campaign("Secret autumn", members=False)
    return world


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_model_dir) -> World:
    """One embedded farm and app for a test module; tests make the fresh assets they change."""
    home = tmp_path_factory.mktemp("review") / "farm-data"
    shutil.copytree(tiny_model_dir, home / "models" / TINY_MODEL_NAME)
    farm = FarmContext(load_settings({"FARM_HOME": str(home)}))
    prepare_database(farm)
    yield build_world(farm)
    farm.db_engine.dispose()
