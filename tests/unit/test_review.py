"""Review decisions, bulk approval, re-render with changes, versions and comparison, on the
embedded farm with assets rendered by the tiny model."""

import pytest
from sqlalchemy import func, select

from farm.assets.detail import asset_detail
from farm.assets.versions import compare, versions_of
from farm.audit.log import verify_chain
from farm.db.models import Asset, AuditEvent, Job, Render, Review
from farm.db.session import transaction
from farm.errors import InvalidInput, NotFound
from farm.queue.routing import queue_depth
from farm.review.rerender import submit_rerender
from farm.review.service import MAX_COMMENT_LENGTH, bulk_approve, decide, review_history
from tests.fixtures.assets import AssetMaker, StatementCounter, add_member, make_user


@pytest.fixture
def farm(embedded_farm):
    """Two campaigns: Spring (owned by the manager, the reviewer is a member) and Autumn (nobody
    but admins may see it); two assets in each."""
    ctx = embedded_farm
    maker = AssetMaker(ctx)
    manager = make_user(ctx, "mia", "campaign_manager")
    reviewer = make_user(ctx, "rob", "reviewer")
    outsider = make_user(ctx, "otto", "reviewer")
    admin = make_user(ctx, "ada", "admin")
    spring = maker.campaign("Spring", owner=manager)
    autumn = maker.campaign("Autumn")
    add_member(ctx, spring, reviewer)
    spring_assets = maker.assets(spring, ["shoe"], [1, 2])
    autumn_assets = maker.assets(autumn, ["bag"], [3, 4])
    return ctx, maker, {"manager": manager, "reviewer": reviewer, "outsider": outsider, "admin": admin}, \
        spring, spring_assets, autumn_assets


def _state(ctx, asset_id):
    with transaction(ctx.session_factory) as session:
        return session.get(Asset, asset_id).approval_state


def _count(ctx, model):
    with transaction(ctx.session_factory) as session:
        return session.scalar(select(func.count()).select_from(model))


@pytest.mark.parametrize("decision, comment, state", [
    ("approve", "", "approved"),
    ("reject", "wrong colours", "rejected"),
    ("request_changes", "  make the shoe red  ", "changes_requested"),
])
def test_decision_records_review_sets_state_and_is_audited(farm, decision, comment, state):
    ctx, _, users, _, (asset_id, other), _ = farm
    with transaction(ctx.session_factory) as session:
        record = decide(session, users["reviewer"], asset_id, decision, comment)
    assert record.decision == decision and record.reviewer_name == "rob"
    assert record.comment == comment.strip()
    assert _state(ctx, asset_id) == state
    assert _state(ctx, other) == "pending"
    with transaction(ctx.session_factory) as session:
        review = session.scalars(select(Review)).one()
        assert (review.asset_id, review.reviewer_id, review.decision) == (asset_id, users["reviewer"].id, decision)
        assert review.created_at is not None
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "asset.reviewed")).one()
        assert event.entity_id == str(asset_id) and event.actor_name == "rob"
        assert event.before == {"approval_state": "pending"}
        assert event.after["approval_state"] == state and event.after["review_id"] == review.id
        assert verify_chain(session) == []


BAD_DECISIONS = [
    ("request_changes", "", "comment"),
    ("request_changes", "   \n ", "comment"),
    ("request_changes", None, "comment"),
    ("approve", "x" * (MAX_COMMENT_LENGTH + 1), "comment"),
    ("approve", 42, "comment"),
    ("approved", "", "decision"),
    ("", "", "decision"),
]


def test_bad_decision_names_the_field_and_changes_nothing(farm):
    ctx, _, users, _, (asset_id, _), _ = farm
    for decision, comment, field in BAD_DECISIONS:
        with pytest.raises(InvalidInput) as caught:
            with transaction(ctx.session_factory) as session:
                decide(session, users["reviewer"], asset_id, decision, comment)
        assert caught.value.field == field, (decision, comment)
    assert _state(ctx, asset_id) == "pending"
    assert _count(ctx, Review) == 0


def test_a_comment_of_the_maximum_length_is_kept(farm):
    ctx, _, users, _, (asset_id, _), _ = farm
    with transaction(ctx.session_factory) as session:
        record = decide(session, users["reviewer"], asset_id, "reject", "y" * MAX_COMMENT_LENGTH)
    assert len(record.comment) == MAX_COMMENT_LENGTH


def test_assets_of_campaigns_the_user_cannot_see_are_not_found(farm):
    ctx, _, users, _, (spring_asset, _), (autumn_asset, _) = farm
    for user, asset_id in [(users["outsider"], spring_asset), (users["reviewer"], autumn_asset),
                           (users["manager"], autumn_asset), (users["admin"], 999_999)]:
        with pytest.raises(NotFound):
            with transaction(ctx.session_factory) as session:
                decide(session, user, asset_id, "approve")
        with pytest.raises(NotFound):
            with transaction(ctx.session_factory) as session:
                review_history(session, user, asset_id)
    assert _count(ctx, Review) == 0
    # The owner, a member and an admin may decide.
    for name in ("manager", "reviewer", "admin"):
        with transaction(ctx.session_factory) as session:
            decide(session, users[name], spring_asset, "approve")
    with transaction(ctx.session_factory) as session:
        decide(session, users["admin"], autumn_asset, "reject", "off brand")


def test_history_lists_every_decision_oldest_first_and_the_latest_wins(farm):
    ctx, _, users, _, (asset_id, _), _ = farm
    steps = [("reviewer", "request_changes", "darker"), ("manager", "reject", ""), ("reviewer", "approve", "ok now")]
    for name, decision, comment in steps:
        with transaction(ctx.session_factory) as session:
            decide(session, users[name], asset_id, decision, comment)
    with transaction(ctx.session_factory) as session:
        history = review_history(session, users["reviewer"], asset_id)
    assert [(r.reviewer_name, r.decision, r.comment) for r in history] == [
        ("rob", "request_changes", "darker"), ("mia", "reject", ""), ("rob", "approve", "ok now")]
    assert history[0].created_at <= history[1].created_at <= history[2].created_at
    assert _state(ctx, asset_id) == "approved"


def test_bulk_approve_approves_all(farm):
    ctx, _, users, _, spring_assets, autumn_assets = farm
    ids = spring_assets + autumn_assets
    with transaction(ctx.session_factory) as session:
        records = bulk_approve(session, users["admin"], ids + [ids[0]])
    assert [r.asset_id for r in records] == ids  # the duplicate counts once
    assert all(_state(ctx, i) == "approved" for i in ids)
    assert _count(ctx, Review) == 4
    with transaction(ctx.session_factory) as session:
        events = session.scalars(select(AuditEvent).where(AuditEvent.action == "asset.reviewed")).all()
    assert sorted(int(e.entity_id) for e in events) == sorted(ids)


def test_bulk_approve_is_all_or_nothing(farm):
    ctx, _, users, _, spring_assets, autumn_assets = farm
    cases = [
        ("reviewer", spring_assets + autumn_assets[:1], "an asset of a campaign the reviewer cannot see"),
        ("admin", spring_assets + [999_999], "an asset that does not exist"),
        ("admin", [], "no asset at all"),
        ("admin", spring_assets + ["seven"], "an id that is not a number"),
        ("admin", 7, "not a list"),
    ]
    for who, asset_ids, problem in cases:
        with pytest.raises(InvalidInput) as caught:
            with transaction(ctx.session_factory) as session:
                bulk_approve(session, users[who], asset_ids)
        assert caught.value.field == "asset_ids", problem
    assert all(_state(ctx, i) == "pending" for i in spring_assets + autumn_assets)
    assert _count(ctx, Review) == 0


def _render_queued(ctx, maker, job_id):
    """The re-render job's one render: queued in the broker; rendered here as a worker would."""
    with transaction(ctx.session_factory) as session:
        render = session.scalars(select(Render).where(Render.job_id == job_id)).one()
    assert render.queue is not None and render.last_enqueued_at is not None
    assert queue_depth(ctx.celery, render.queue) >= 1  # the message was published after the commit
    (asset_id,) = maker.run([render.id])
    return render, asset_id


def test_rerender_with_changes_makes_version_2_linked_to_its_parent_and_it_can_be_approved(farm):
    ctx, maker, users, spring, (source_id, sibling_id), _ = farm
    reviewer = users["reviewer"]
    with transaction(ctx.session_factory) as session:
        decide(session, reviewer, source_id, "request_changes", "more contrast, another seed")
        source = session.get(Asset, source_id)
        source_params, source_job = dict(source.render.params), source.render.job
        source_model_id, source_version_id = source_job.model_id, source_job.template_version_id

    job_id = submit_rerender(ctx, reviewer, source_id,
                             {"prompt": "shoe on sand, high contrast", "seed": "77", "steps": 2})
    with transaction(ctx.session_factory) as session:
        job = session.get(Job, job_id)
        assert job.name == f"Re-render of asset {source_id}"
        assert (job.campaign_id, job.model_id, job.template_version_id) == (spring, source_model_id, source_version_id)
        assert job.submitted_by_id == reviewer.id
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "job.submitted",
                                                         AuditEvent.entity_id == str(job_id))).one()
        assert event.after["parent_asset_id"] == source_id
        assert event.after["changes"]["seed"] == {"from": 1, "to": 77}

    render, new_id = _render_queued(ctx, maker, job_id)
    assert render.parent_asset_id == source_id
    assert render.params == {**source_params, "prompt": "shoe on sand, high contrast", "seed": 77, "steps": 2}
    with transaction(ctx.session_factory) as session:
        new = session.get(Asset, new_id)
        assert (new.version, new.parent_asset_id, new.campaign_id, new.approval_state) == (2, source_id, spring, "pending")
        decide(session, reviewer, new_id, "approve")
    assert _state(ctx, new_id) == "approved"
    assert _state(ctx, source_id) == "changes_requested"

    # A re-render of version 2 is version 3; every version lists the whole lineage, and the
    # sibling (another render of the same job) is not part of it.
    third_job = submit_rerender(ctx, reviewer, new_id, {"cfg_scale": 9})
    _, third_id = _render_queued(ctx, maker, third_job)
    with transaction(ctx.session_factory) as session:
        for asked in (source_id, new_id, third_id):
            lineage = versions_of(session, reviewer, asked)
            assert [(v.asset_id, v.version, v.parent_asset_id) for v in lineage] == [
                (source_id, 1, None), (new_id, 2, source_id), (third_id, 3, new_id)]
            assert [v.is_requested for v in lineage] == [v.asset_id == asked for v in lineage]
            assert [v.approval_state for v in lineage] == ["changes_requested", "approved", "pending"]
        assert [v.asset_id for v in versions_of(session, reviewer, sibling_id)] == [sibling_id]

        comparison = compare(session, reviewer, source_id, third_id)
        assert comparison.differences == ["prompt", "seed", "steps", "cfg_scale"]
        rows = {row.name: row for row in comparison.rows}
        assert (rows["seed"].a, rows["seed"].b) == (1, 77)
        assert not rows["sampler"].differs and rows["model"].a == "tiny-sd"
        assert "variable_row" not in rows
        with pytest.raises(NotFound):
            compare(session, users["outsider"], source_id, third_id)


def test_two_rerenders_of_one_asset_are_both_version_2(farm):
    ctx, maker, users, _, (source_id, _), _ = farm
    first = submit_rerender(ctx, users["manager"], source_id, {"seed": 10})
    second = submit_rerender(ctx, users["manager"], source_id, {"seed": 11})
    _, a = _render_queued(ctx, maker, first)
    _, b = _render_queued(ctx, maker, second)
    with transaction(ctx.session_factory) as session:
        lineage = versions_of(session, users["manager"], b)
    assert [(v.asset_id, v.version) for v in lineage] == [(source_id, 1), (a, 2), (b, 2)]


BAD_CHANGES = [
    ({"width": 128}, "width"),
    ({"model": "other"}, "model"),
    ({"steps": 0}, "steps"),
    ({"steps": "many"}, "steps"),
    ({"cfg_scale": 31}, "cfg_scale"),
    ({"sampler": "Euler z"}, "sampler"),
    ({"seed": -1}, "seed"),
    ({"prompt": "   "}, "prompt"),
    ({}, "changes"),
    ({"seed": 1, "prompt": "shoe on sand"}, "changes"),  # the same as the source
    (["seed"], "changes"),
]


def test_bad_rerender_names_the_field_and_writes_nothing(farm):
    ctx, _, users, _, (source_id, _), _ = farm
    jobs_before = _count(ctx, Job)
    for changes, field in BAD_CHANGES:
        with pytest.raises(InvalidInput) as caught:
            submit_rerender(ctx, users["reviewer"], source_id, changes)
        assert caught.value.field == field, changes
    assert _count(ctx, Job) == jobs_before


def test_rerender_of_an_invisible_asset_is_not_found(farm):
    ctx, _, users, _, _, (autumn_asset, _) = farm
    jobs_before = _count(ctx, Job)
    with pytest.raises(NotFound):
        submit_rerender(ctx, users["reviewer"], autumn_asset, {"seed": 5})
    assert _count(ctx, Job) == jobs_before


def test_the_same_rerender_form_sent_twice_makes_one_job(farm):
    ctx, _, users, _, (source_id, _), _ = farm
    jobs_before = _count(ctx, Job)
    first = submit_rerender(ctx, users["reviewer"], source_id, {"seed": 5}, submission_key="form-123")
    again = submit_rerender(ctx, users["reviewer"], source_id, {"seed": 5}, submission_key="form-123")
    assert first == again
    assert _count(ctx, Job) == jobs_before + 1


def test_asset_detail_has_params_provenance_reviews_and_versions(farm):
    ctx, maker, users, spring, (asset_id, _), _ = farm
    with transaction(ctx.session_factory) as session:
        decide(session, users["reviewer"], asset_id, "request_changes", "warmer light")
    child_job = submit_rerender(ctx, users["reviewer"], asset_id, {"prompt": "shoe on sand, warm light"})
    _, child_id = _render_queued(ctx, maker, child_job)
    with transaction(ctx.session_factory) as session:
        with StatementCounter(ctx.db_engine) as counter:
            detail = asset_detail(session, users["reviewer"], asset_id)
        asset = session.get(Asset, asset_id)
        expected = (asset.storage_key, asset.thumbnail_key, asset.sha256, asset.size_bytes)
        render = asset.render
    assert (detail.storage_key, detail.thumbnail_key, detail.sha256, detail.size_bytes) == expected
    assert (detail.width, detail.height, detail.format, detail.version, detail.kind) == (64, 64, "png", 1, "txt2img")
    assert detail.params == render.params
    p = detail.provenance
    assert (p.campaign_id, p.campaign_name, p.brand) == (spring, "Spring", "Acme")
    assert p.job_id == render.job_id and p.job_kind == "txt2img"
    assert (p.template_name, p.template_version, p.template_body) == ("Spring product", 1, "{{ product }} on {{ background }}")
    assert p.variables == {"product": "shoe", "background": "sand", "avoid": "text"}
    assert p.model_name == "tiny-sd" and p.model_short_hash == p.model_sha256[:10] and len(p.model_sha256) == 64
    assert (p.license_identifier, p.rendered_by, p.attempts) == ("Apache-2.0", "test-worker", 1)
    assert p.started_at <= p.finished_at
    assert [(r.reviewer_name, r.decision, r.comment) for r in detail.reviews] == [("rob", "request_changes", "warmer light")]
    assert [(v.asset_id, v.version) for v in detail.versions] == [(asset_id, 1), (child_id, 2)]
    # the visibility check, the provenance join, the reviews, the lineage
    assert counter.count == 4, counter.statements
    with pytest.raises(NotFound):
        with transaction(ctx.session_factory) as session:
            asset_detail(session, users["outsider"], asset_id)
