"""farm.campaigns.overview: the read-only summaries the campaign, template and batch pages show."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from farm.accounts.service import create_user, set_disabled
from farm.campaigns.overview import (
    active_checkpoints, campaign_counts, member_candidates, recent_jobs, template_version_choices, user_names,
    visible_templates,
)
from farm.campaigns.service import add_member, archive_campaign, create_campaign_as
from farm.db.models import Asset, Render
from farm.db.session import transaction
from farm.errors import NotFound
from farm.jobs.batch import BatchRequest, submit_batch
from farm.templates.service import create_campaign_template, edit_template

FAST = {"steps": 2, "width": 64, "height": 64}


@pytest.fixture
def world(embedded_farm):
    with transaction(embedded_farm.session_factory) as session:
        people = {name: create_user(session, name=name, role=role) for name, role in [
            ("ana", "campaign_manager"), ("bo", "campaign_manager"), ("rita", "reviewer"), ("ray", "reviewer"),
            ("adam", "admin"), ("olga", "ops")]}
        spring = create_campaign_as(session, people["ana"], name="Spring", brand="Acme")
        autumn = create_campaign_as(session, people["bo"], name="Autumn", brand="Acme")
        add_member(session, people["ana"], spring.id, people["rita"].id)
        hero = create_campaign_template(session, people["ana"], spring.id, name="hero", body="{{ product }}",
                                        variables=["product"], default_params=FAST)
        second = edit_template(session, people["ana"], hero.template_id, body="{{ product }}, {{ light }}",
                               variables=["product", "light"], default_params=FAST)
        alpha = create_campaign_template(session, people["ana"], spring.id, name="alpha", body="{{ thing }}",
                                         variables=["thing"], default_params=FAST)
        fall = create_campaign_template(session, people["bo"], autumn.id, name="fall", body="{{ leaf }}",
                                        variables=["leaf"], default_params=FAST)
    return {"farm": embedded_farm, "people": people, "spring": spring, "autumn": autumn, "hero": hero,
            "second": second, "alpha": alpha, "fall": fall}


def _submit(world, campaign, version, rows, name=None):
    return submit_batch(world["farm"], world["people"]["ana" if campaign is world["spring"] else "bo"], BatchRequest(
        campaign_id=campaign.id, template_version_id=version.id, rows=rows, seeds=[1], formats=[], name=name))


def _assets(world, job_id, states):
    """Asset rows for the job's renders with the given approval states (no images needed to count)."""
    with transaction(world["farm"].session_factory) as session:
        renders = session.scalars(select(Render).where(Render.job_id == job_id).order_by(Render.index)).all()
        for render, state in zip(renders, states):
            render.state = "succeeded"
            session.add(Asset(render_id=render.id, campaign_id=render.job.campaign_id, job_id=job_id,
                              model_id=render.model_id, storage_key=f"images/{render.id}.png", sha256="0" * 64,
                              size_bytes=1, format="png", width=64, height=64, thumbnail_key=f"thumbs/{render.id}.png",
                              approval_state=state))


def test_counts_of_jobs_and_assets_by_approval_state(world):
    first = _submit(world, world["spring"], world["second"],
                    [{"product": p, "light": "warm"} for p in ("a", "b", "c", "d")])
    _submit(world, world["spring"], world["alpha"], [{"thing": "x"}])
    _assets(world, first.job_id, ["approved", "approved", "rejected"])
    with transaction(world["farm"].session_factory) as session:
        counts = campaign_counts(session, [world["spring"].id, world["autumn"].id])
        assert campaign_counts(session, []) == {}
    spring, autumn = counts[world["spring"].id], counts[world["autumn"].id]
    assert spring.jobs == 2 and spring.total_assets == 3
    assert spring.assets == {"pending": 0, "approved": 2, "rejected": 1, "changes_requested": 0}
    assert autumn.jobs == 0 and autumn.total_assets == 0 and set(autumn.assets) == set(spring.assets)


def test_recent_jobs_newest_first_with_render_counts(world):
    older = _submit(world, world["spring"], world["hero"], [{"product": "a"}, {"product": "b"}], name="older")
    newer = _submit(world, world["spring"], world["second"], [{"product": "a", "light": "x"}], name="newer")
    _assets(world, older.job_id, ["pending"])
    with transaction(world["farm"].session_factory) as session:
        jobs = recent_jobs(session, world["people"]["rita"], world["spring"].id)
        assert [j.id for j in recent_jobs(session, world["people"]["ana"], world["spring"].id, limit=1)] == [newer.job_id]
        with pytest.raises(NotFound):
            recent_jobs(session, world["people"]["bo"], world["spring"].id)
    assert [(j.id, j.name) for j in jobs] == [(newer.job_id, "newer"), (older.job_id, "older")]
    newest, oldest = jobs
    assert (newest.template_name, newest.template_version, newest.model, newest.submitted_by) == ("hero", 2, "tiny-sd", "ana")
    assert (oldest.renders, oldest.finished_renders, oldest.succeeded_renders) == (2, 1, 1)


def test_active_checkpoints_only(world):
    with transaction(world["farm"].session_factory) as session:
        models = active_checkpoints(session)
    assert [(m.name, m.architecture) for m in models] == [("tiny-sd", "sd1")]  # not the lanczos upscaler
    assert models[0].license


def test_member_candidates(world):
    people = world["people"]
    with transaction(world["farm"].session_factory) as session:
        set_disabled(session, session.merge(people["ray"]), True)
        names = [u.name for u in member_candidates(session, people["ana"], world["spring"].id)]
        with pytest.raises(NotFound):
            member_candidates(session, people["bo"], world["spring"].id)
    # Not the owner (ana), not a member (rita), not disabled (ray), not roles that see everything.
    assert names == ["bo"]


def test_template_version_choices_by_name_newest_first(world):
    with transaction(world["farm"].session_factory) as session:
        choices = template_version_choices(session, world["people"]["rita"], world["spring"].id)
        with pytest.raises(NotFound):
            template_version_choices(session, world["people"]["bo"], world["spring"].id)
    assert [(c.template_name, c.version, c.latest) for c in choices] == [
        ("alpha", 1, True), ("hero", 2, True), ("hero", 1, False)]
    assert choices[1].variables == ["product", "light"] and choices[1].body == "{{ product }}, {{ light }}"
    assert choices[1].default_params == FAST


def test_visible_templates(world):
    people = world["people"]
    with transaction(world["farm"].session_factory) as session:
        rita = [(t.campaign_name, t.name, t.latest_version) for t in visible_templates(session, people["rita"])]
        admin = [t.name for t in visible_templates(session, people["adam"])]
        archive_campaign(session, people["bo"], world["autumn"].id)
        after = [t.name for t in visible_templates(session, people["olga"])]
        with_archived = [t.name for t in visible_templates(session, people["olga"], include_archived=True)]
    assert rita == [("Spring", "alpha", 1), ("Spring", "hero", 2)]
    assert admin == ["fall", "alpha", "hero"]  # by campaign name: Autumn, then Spring
    assert after == ["alpha", "hero"] and with_archived == ["fall", "alpha", "hero"]


def test_user_names(world):
    people = world["people"]
    with transaction(world["farm"].session_factory) as session:
        assert user_names(session, [people["ana"].id, None, people["bo"].id, 999999]) == {
            people["ana"].id: "ana", people["bo"].id: "bo"}
        assert user_names(session, [None]) == {}
