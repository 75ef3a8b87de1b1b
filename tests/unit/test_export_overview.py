"""farm.exports.overview: the campaigns a user may export from, with their approved counts."""

from farm.db.session import transaction
from farm.exports.overview import exportable_campaigns
from farm.review.service import decide
from tests.fixtures.assets import AssetMaker, StatementCounter, add_member, make_user


def test_visible_campaigns_with_approved_counts_in_one_query(embedded_farm):
    ctx = embedded_farm
    maker = AssetMaker(ctx)
    admin = make_user(ctx, "ada", "admin")
    manager = make_user(ctx, "mia", "campaign_manager")
    spring = maker.campaign("Spring", owner=manager)
    autumn = maker.campaign("Autumn")
    maker.campaign("Winter")
    spring_assets = maker.assets(spring, ["shoe"], [1, 2, 3])
    (autumn_asset,) = maker.assets(autumn, ["hat"], [4])
    with transaction(ctx.session_factory) as session:
        decide(session, admin, spring_assets[0], "approve")
        decide(session, admin, spring_assets[1], "approve")
        decide(session, admin, spring_assets[2], "reject", "no")
        decide(session, admin, autumn_asset, "approve")
        decide(session, admin, autumn_asset, "request_changes", "darker")  # the latest decision wins

    with transaction(ctx.session_factory) as session:
        with StatementCounter(ctx.db_engine) as counter:
            every = exportable_campaigns(session, admin)
        assert counter.count == 1
        mine = exportable_campaigns(session, manager)
    assert [(c.name, c.approved_assets) for c in every] == [("Autumn", 0), ("Spring", 2), ("Winter", 0)]
    assert [(c.campaign_id, c.name, c.brand, c.status, c.approved_assets) for c in mine] == [
        (spring, "Spring", "Acme", "active", 2)]
    add_member(ctx, autumn, manager)
    with transaction(ctx.session_factory) as session:
        assert [c.name for c in exportable_campaigns(session, manager)] == ["Autumn", "Spring"]
