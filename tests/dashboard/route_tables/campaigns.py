"""Route-access rows for the campaigns area: campaign, template and "New batch" pages, and the
campaigns, templates and batch-job API.

Posts are chosen to change nothing much: forms with a missing required field (400 for the roles
allowed), removing a user who is no member, archiving and unarchiving a campaign of their own
that no other row uses.
"""

from __future__ import annotations

from farm.campaigns.service import add_member, create_campaign_as
from farm.db.models import ROLES
from farm.db.session import transaction
from farm.templates.service import create_campaign_template
from tests.dashboard.route_tables import Route

C = "/campaigns/{cmp_campaign_id}"
T = "/templates/{cmp_template_id}"
API_C = "/api/v1/campaigns/{cmp_campaign_id}"

ROUTES = [
    # Campaign pages
    Route("/campaigns/", "GET", "/campaigns/", "campaigns.view"),
    Route("/campaigns/", "POST", "/campaigns/", "campaigns.edit", {"name": "", "brand": ""}),
    Route("/campaigns/new", "GET", "/campaigns/new", "campaigns.edit"),
    Route("/campaigns/<int:campaign_id>", "GET", C, "campaigns.view"),
    Route("/campaigns/<int:campaign_id>/edit", "GET", C + "/edit", "campaigns.edit"),
    Route("/campaigns/<int:campaign_id>/edit", "POST", C + "/edit", "campaigns.edit", {"name": "", "brand": "x"}),
    Route("/campaigns/<int:campaign_id>/archive", "POST", "/campaigns/{cmp_archive_campaign_id}/archive",
          "campaigns.edit"),
    Route("/campaigns/<int:campaign_id>/unarchive", "POST", "/campaigns/{cmp_archive_campaign_id}/unarchive",
          "campaigns.edit"),
    Route("/campaigns/<int:campaign_id>/members", "POST", C + "/members", "campaigns.edit", {"user_id": ""}),
    Route("/campaigns/<int:campaign_id>/members/<int:user_id>/remove", "POST",
          C + "/members/{target_user_id}/remove", "campaigns.edit"),
    # Template pages
    Route("/templates/", "GET", "/templates/", "campaigns.view"),
    Route("/campaigns/<int:campaign_id>/templates/new", "GET", C + "/templates/new", "templates.edit"),
    Route("/campaigns/<int:campaign_id>/templates/new", "POST", C + "/templates/new", "templates.edit",
          {"action": "save", "name": "", "body": ""}),
    Route("/campaigns/<int:campaign_id>/templates/preview", "POST", C + "/templates/preview", "templates.edit",
          {"body": ""}),
    Route("/templates/<int:template_id>", "GET", T, "campaigns.view"),
    Route("/templates/<int:template_id>/edit", "GET", T + "/edit", "templates.edit"),
    Route("/templates/<int:template_id>/edit", "POST", T + "/edit", "templates.edit", {"action": "save", "body": ""}),
    # New batch
    Route("/campaigns/<int:campaign_id>/batches/new", "GET", C + "/batches/new", "jobs.submit"),
    Route("/campaigns/<int:campaign_id>/batches/new", "POST", C + "/batches/new", "jobs.submit",
          {"action": "check", "template_version_id": ""}),
    # API: campaigns
    Route("/api/v1/campaigns", "GET", "/api/v1/campaigns", "campaigns.view"),
    Route("/api/v1/campaigns", "POST", "/api/v1/campaigns", "campaigns.edit"),
    Route("/api/v1/campaigns/<int:campaign_id>", "GET", API_C, "campaigns.view"),
    Route("/api/v1/campaigns/<int:campaign_id>", "PATCH", API_C, "campaigns.edit"),
    Route("/api/v1/campaigns/<int:campaign_id>/archive", "POST",
          "/api/v1/campaigns/{cmp_archive_campaign_id}/archive", "campaigns.edit"),
    Route("/api/v1/campaigns/<int:campaign_id>/unarchive", "POST",
          "/api/v1/campaigns/{cmp_archive_campaign_id}/unarchive", "campaigns.edit"),
    Route("/api/v1/campaigns/<int:campaign_id>/members", "GET", API_C + "/members", "campaigns.view"),
    Route("/api/v1/campaigns/<int:campaign_id>/members", "POST", API_C + "/members", "campaigns.edit"),
    Route("/api/v1/campaigns/<int:campaign_id>/members/<int:user_id>", "DELETE",
          API_C + "/members/{target_user_id}", "campaigns.edit"),
    Route("/api/v1/channel-formats", "GET", "/api/v1/channel-formats", "campaigns.view"),
    # API: templates
    Route("/api/v1/campaigns/<int:campaign_id>/templates", "GET", API_C + "/templates", "campaigns.view"),
    Route("/api/v1/campaigns/<int:campaign_id>/templates", "POST", API_C + "/templates", "templates.edit"),
    Route("/api/v1/campaigns/<int:campaign_id>/templates/preview", "POST", API_C + "/templates/preview",
          "templates.edit"),
    Route("/api/v1/templates/<int:template_id>", "GET", "/api/v1" + T, "campaigns.view"),
    Route("/api/v1/templates/<int:template_id>/versions", "POST", "/api/v1" + T + "/versions", "templates.edit"),
    # API: batch jobs
    Route("/api/v1/jobs/plan", "POST", "/api/v1/jobs/plan", "jobs.submit"),
    Route("/api/v1/jobs", "POST", "/api/v1/jobs", "jobs.submit"),
]


def targets(farm, role_users) -> dict:
    owner = role_users["campaign_manager"]
    with transaction(farm.session_factory) as session:
        campaign_id = create_campaign_as(session, owner, name="Campaigns access", brand="Acme").id
        archive_id = create_campaign_as(session, owner, name="Campaigns access (archive)", brand="Acme").id
        for role in ROLES:
            if role_users[role].id != owner.id:
                add_member(session, owner, campaign_id, role_users[role].id)
                add_member(session, owner, archive_id, role_users[role].id)
        template_id = create_campaign_template(
            session, owner, campaign_id, name="campaigns-access", body="{{ product }} on a table",
            variables=["product"], default_params={"steps": 2, "width": 64, "height": 64}).template_id
    return {"cmp_campaign_id": campaign_id, "cmp_archive_campaign_id": archive_id, "cmp_template_id": template_id}
