"""The asset page (image, parameters, provenance, review history, versions, actions), the
comparison page and re-render with changes, through the Flask test client."""

from __future__ import annotations

import html as html_lib
import re

import pytest
from sqlalchemy import func, select

from farm.db.models import Asset, Job, Render
from farm.db.session import transaction
from farm.review.service import decide
from tests.dashboard.conftest import csrf_token
from tests.dashboard.review_world import world  # noqa: F401


def _count(world, model) -> int:
    with transaction(world.farm.session_factory) as session:
        return session.scalar(select(func.count()).select_from(model))


def _submission_key(page: str) -> str:
    return re.search(r'name="submission_key" value="([^"]+)"', page).group(1)


def _rerender_form(world, client, asset_id, **changes) -> dict:
    page = client.get(f"/assets/{asset_id}").text
    values = {name: html_lib.unescape(re.search(rf'name="{name}"[^>]*>([^<]*)</textarea>', page).group(1))
              for name in ("prompt", "negative_prompt")}
    for name in ("seed", "steps", "cfg_scale"):
        values[name] = re.search(rf'name="{name}"[^>]*value="([^"]*)"', page).group(1)
    values["sampler"] = re.search(r'<option selected>([^<]+)</option>', page).group(1)
    return {**values, "csrf_token": csrf_token(client), "submission_key": _submission_key(page), **changes}


@pytest.fixture(scope="module")
def reviewed(world):
    """An asset with a decision on it and a re-render (version 2) already rendered."""
    source, sibling = world.assets(2, products=["lamp"])
    with transaction(world.farm.session_factory) as session:
        decide(session, world.users["reviewer"], source, "request_changes", "warmer light, please")
    client = world.client("reviewer")
    response = client.post(f"/assets/{source}/rerender", data=_rerender_form(world, client, source, seed="77"))
    assert response.status_code == 302, response.text
    with transaction(world.farm.session_factory) as session:
        render_id = session.scalar(select(Render.id).where(Render.parent_asset_id == source))
    (child,) = world.maker.run([render_id])
    return source, sibling, child


def test_asset_page_shows_image_parameters_provenance_history_and_versions(world, reviewed):
    source, _, child = reviewed
    with transaction(world.farm.session_factory) as session:
        asset = session.get(Asset, source)
        storage_key, params, job_id = asset.storage_key, dict(asset.render.params), asset.job_id
        model = asset.render.model
        sha, short = model.sha256, model.short_hash
    response = world.client("reviewer").get(f"/assets/{source}")
    assert response.status_code == 200
    page = response.text
    assert f'src="/objects/{storage_key}"' in page and 'data-testid="asset-image"' in page
    # parameters
    for value in (params["prompt"], str(params["seed"]), str(params["steps"]), params["sampler"]):
        assert html_lib.escape(value) in page
    # provenance: campaign, job, template version, model and its short hash, license, worker, times
    assert "Spring launch" in page and f"#{job_id}" in page and "product shot" in page and ">v1<" in page
    assert f'title="sha256 {sha}"' in page and f">{short}</code>" in page
    assert "Apache-2.0" in page and "test-worker" in page and "<time datetime=" in page
    # review history: who, decision, comment, when
    history = page[page.index('data-testid="review-history"'):]
    assert "reviewer-review" in history and "changes requested" in history and "warmer light, please" in history
    # versions: both, linked, with states; compare link to the other
    assert 'data-testid="version-1"' in page and 'data-testid="version-2"' in page
    assert f'href="/assets/{child}"' in page and f'href="/assets/compare?a={source}&amp;b={child}"' in page
    # actions for a reviewer
    assert 'data-testid="approve"' in page and 'data-testid="rerender"' in page


def test_the_child_links_back_to_its_parent(world, reviewed):
    source, _, child = reviewed
    page = world.client("reviewer").get(f"/assets/{child}").text
    assert "version 2" in page and f'href="/assets/compare?a={source}&amp;b={child}"' in page
    assert 'data-testid="compare-parent"' in page


@pytest.mark.parametrize("role", ["ops", "auditor"])
def test_roles_that_cannot_decide_see_the_page_without_actions(world, reviewed, role):
    page = world.client(role).get(f"/assets/{reviewed[0]}").text
    assert 'data-testid="provenance"' in page
    assert 'data-testid="approve"' not in page and 'data-testid="rerender"' not in page


def test_invisible_or_missing_assets_are_not_found(world):
    (hidden,) = world.assets(1, world.hidden_campaign_id)
    assert world.client("reviewer").get(f"/assets/{hidden}").status_code == 404
    assert world.client("outsider").get(f"/assets/{hidden}").status_code == 404
    assert world.client("reviewer").get("/assets/999999").status_code == 404
    assert world.client("admin").get(f"/assets/{hidden}").status_code == 200


def test_compare_shows_both_images_and_highlights_differences(world, reviewed):
    source, _, child = reviewed
    response = world.client("auditor").get(f"/assets/compare?a={source}&b={child}")
    assert response.status_code == 200
    page = response.text
    assert 'data-testid="compare-a"' in page and 'data-testid="compare-b"' in page
    assert page.count('<img src="/objects/') == 2
    differing = [name.strip() for name in re.findall(r'<tr class="differs" data-differs="true">\s*<th scope="row">([^<]+)<', page)]
    assert differing == ["seed"]
    assert "Differs in: seed" in page
    same = re.search(r'<tr class="">\s*<th scope="row">sampler', page)
    assert same, "unchanged parameters are listed too"


@pytest.mark.parametrize("query, field", [("a=1", "b"), ("", "a"), ("a=x&b=2", "a"), ("a=1&b=-1", "b")])
def test_compare_with_bad_input_names_the_field(world, reviewed, query, field):
    query = query.replace("a=1", f"a={reviewed[0]}")
    response = world.client("reviewer").get(f"/assets/compare?{query}")
    assert response.status_code == 400
    assert f'id="{field}-error"' in response.text
    assert 'name="a"' in response.text and 'name="b"' in response.text


def test_compare_with_an_invisible_asset_is_not_found(world, reviewed):
    (hidden,) = world.assets(1, world.hidden_campaign_id)
    assert world.client("reviewer").get(f"/assets/compare?a={reviewed[0]}&b={hidden}").status_code == 404


def test_rerender_form_is_prefilled_from_the_source(world, reviewed):
    source = reviewed[0]
    with transaction(world.farm.session_factory) as session:
        params = session.get(Asset, source).render.params
    form = _rerender_form(world, world.client("reviewer"), source)
    assert form["prompt"] == params["prompt"] and form["negative_prompt"] == params["negative_prompt"]
    assert (form["seed"], form["steps"], form["sampler"]) == (str(params["seed"]), str(params["steps"]), params["sampler"])
    assert float(form["cfg_scale"]) == params["cfg_scale"]


def test_rerender_makes_one_linked_job_even_when_sent_twice(world):
    (source,) = world.assets(1)
    client = world.client("campaign_manager")
    form = _rerender_form(world, client, source, prompt="shoe on sand, golden hour", steps="3")
    jobs = _count(world, Job)
    first = client.post(f"/assets/{source}/rerender", data=form)
    again = client.post(f"/assets/{source}/rerender", data=form)  # a double click
    assert first.status_code == again.status_code == 302
    assert _count(world, Job) == jobs + 1
    with transaction(world.farm.session_factory) as session:
        job = session.scalars(select(Job).order_by(Job.id.desc())).first()
        render = job.renders[0]
        assert render.parent_asset_id == source and job.name == f"Re-render of asset {source}"
        assert render.params["prompt"] == "shoe on sand, golden hour" and render.params["steps"] == 3
        assert job.submitted_by_id == world.users["campaign_manager"].id
    # To the job's page when the jobs pages exist, else back to the asset.
    expected = f"/jobs/{job.id}" if "jobs.view" in world.app.view_functions else f"/assets/{source}"
    assert first.headers["Location"] == expected
    assert f"Re-render submitted as job {job.id}" in client.get(first.headers["Location"]).text
    (child,) = world.maker.run([render.id])
    with transaction(world.farm.session_factory) as session:
        new = session.get(Asset, child)
        assert (new.version, new.parent_asset_id) == (2, source)


BAD_RERENDERS = [
    ({"steps": "0"}, "steps"),
    ({"steps": "many"}, "steps"),
    ({"cfg_scale": "31"}, "cfg_scale"),
    ({"seed": "-5"}, "seed"),
    ({"sampler": "Euler z"}, "sampler"),
    ({"prompt": "   "}, "prompt"),
    ({}, "changes"),
    ({"submission_key": "k" * 65}, "submission_key"),
]


@pytest.mark.parametrize("changes, field", BAD_RERENDERS)
def test_bad_rerender_is_shown_at_the_field_with_the_values_kept(world, reviewed, changes, field):
    source = reviewed[1]
    client = world.client("reviewer")
    form = _rerender_form(world, client, source, **changes)
    form.setdefault("prompt", "x")
    jobs = _count(world, Job)
    response = client.post(f"/assets/{source}/rerender", data=form)
    assert response.status_code == 400
    assert _count(world, Job) == jobs
    page = response.text
    if field in ("steps", "cfg_scale", "seed", "sampler", "prompt"):
        assert f'id="{field}-error"' in page
    else:
        assert 'data-testid="rerender-error"' in page
    assert "<details class=\"card rerender\" data-testid=\"rerender\" open>" in page
    for name in ("steps", "cfg_scale", "seed"):
        if name in changes:
            assert f'value="{html_lib.escape(changes[name])}"' in page


def test_rerender_refusals_change_nothing(world, reviewed):
    source = reviewed[1]
    (hidden,) = world.assets(1, world.hidden_campaign_id)
    jobs = _count(world, Job)
    reviewer = world.client("reviewer")
    form = _rerender_form(world, reviewer, source, seed="4242")
    # a role without review.decide
    ops = world.client("ops")
    assert ops.post(f"/assets/{source}/rerender", data={**form, "csrf_token": csrf_token(ops)}).status_code == 403
    # an asset of a campaign the user cannot see
    assert reviewer.post(f"/assets/{hidden}/rerender", data=form).status_code == 404
    # a stale form (no or a wrong CSRF token)
    stale = reviewer.post(f"/assets/{source}/rerender", data={**form, "csrf_token": "stale"})
    assert stale.status_code == 400 and "stale" in stale.text
    assert _count(world, Job) == jobs
