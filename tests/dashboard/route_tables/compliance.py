"""Route-access rows for the compliance area: license and model pages and their admin forms, the
auditor pages (event log, one event, chain verification, reports, export), and the licenses,
models and audit API.

Targets: a license of its own (LicenseRef-Access-Test), the tiny model (active), the first audit
event, a campaign for the campaign report (auditors and admins see every campaign). API bodies are sent as a form, so
the roles allowed get 400 (a JSON body is required) and nothing changes. The forms change nothing: an empty license form, an empty model registration, a suspension
without a reason, unsuspending an active model, a license change naming no license; each answers
400 to the admin.
"""

from __future__ import annotations

from sqlalchemy import select

from farm.campaigns.service import create_campaign_as
from farm.db.models import AuditEvent, RegisteredModel, User
from farm.db.session import transaction
from farm.licenses.admin import create_license
from tests.dashboard.route_tables import Route

LICENSE = "/licenses/{compliance_license}"
MODEL = "/models/{compliance_model_id}"
API_LICENSE = "/api/v1/licenses/{compliance_license}"
API_MODEL = "/api/v1/models/{compliance_model_id}"
RANGE = "?from=2020-01-01&to=2020-01-02"

ROUTES = [
    Route("/licenses/", "GET", "/licenses/", "campaigns.view"),
    Route("/licenses/", "POST", "/licenses/", "licenses.manage"),
    Route("/licenses/new", "GET", "/licenses/new", "licenses.manage"),
    Route("/licenses/<identifier>", "GET", LICENSE, "campaigns.view"),
    Route("/licenses/<identifier>/edit", "GET", LICENSE + "/edit", "licenses.manage"),
    Route("/licenses/<identifier>/edit", "POST", LICENSE + "/edit", "licenses.manage"),
    Route("/models/", "GET", "/models/", "campaigns.view"),
    Route("/models/", "POST", "/models/", "models.manage"),
    Route("/models/new", "GET", "/models/new", "models.manage"),
    Route("/models/<int:model_id>", "GET", MODEL, "campaigns.view"),
    Route("/models/<int:model_id>/suspend", "POST", MODEL + "/suspend", "models.manage", {"reason": ""}),
    Route("/models/<int:model_id>/unsuspend", "POST", MODEL + "/unsuspend", "models.manage"),
    Route("/models/<int:model_id>/license", "POST", MODEL + "/license", "models.manage", {"license": ""}),
    Route("/audit/", "GET", "/audit/", "audit.view"),
    Route("/audit/events/<int:event_id>", "GET", "/audit/events/{compliance_event_id}", "audit.view"),
    Route("/audit/verify", "GET", "/audit/verify", "audit.view"),
    Route("/audit/export", "GET", "/audit/export" + RANGE + "&format=csv", "audit.view"),
    Route("/audit/reports/models", "GET", "/audit/reports/models" + RANGE, "audit.view"),
    Route("/audit/reports/licenses", "GET", "/audit/reports/licenses" + RANGE, "audit.view"),
    Route("/audit/reports/campaign", "GET", "/audit/reports/campaign", "audit.view"),
    Route("/audit/reports/refusals", "GET", "/audit/reports/refusals" + RANGE, "audit.view"),
    Route("/api/v1/licenses", "GET", "/api/v1/licenses", "campaigns.view"),
    Route("/api/v1/licenses", "POST", "/api/v1/licenses", "licenses.manage"),
    Route("/api/v1/licenses/<identifier>", "GET", API_LICENSE, "campaigns.view"),
    Route("/api/v1/licenses/<identifier>", "PATCH", API_LICENSE, "licenses.manage"),
    Route("/api/v1/models", "GET", "/api/v1/models", "campaigns.view"),
    Route("/api/v1/models", "POST", "/api/v1/models", "models.manage"),
    Route("/api/v1/models/<int:model_id>", "GET", API_MODEL, "campaigns.view"),
    Route("/api/v1/models/<int:model_id>/suspend", "POST", API_MODEL + "/suspend", "models.manage"),
    Route("/api/v1/models/<int:model_id>/unsuspend", "POST", API_MODEL + "/unsuspend", "models.manage"),
    Route("/api/v1/models/<int:model_id>/license", "POST", API_MODEL + "/license", "models.manage"),
    Route("/api/v1/audit/events", "GET", "/api/v1/audit/events", "audit.view"),
    Route("/api/v1/audit/events/<int:event_id>", "GET", "/api/v1/audit/events/{compliance_event_id}", "audit.view"),
    Route("/api/v1/audit/verify", "GET", "/api/v1/audit/verify", "audit.view"),
    Route("/api/v1/audit/reports/models", "GET", "/api/v1/audit/reports/models" + RANGE, "audit.view"),
    Route("/api/v1/audit/reports/licenses", "GET", "/api/v1/audit/reports/licenses" + RANGE, "audit.view"),
    Route("/api/v1/audit/reports/campaigns/<int:campaign_id>", "GET",
          "/api/v1/audit/reports/campaigns/{compliance_campaign_id}" + RANGE, "audit.view"),
    Route("/api/v1/audit/reports/refusals", "GET", "/api/v1/audit/reports/refusals" + RANGE, "audit.view"),
    Route("/api/v1/audit/export.csv", "GET", "/api/v1/audit/export.csv" + RANGE, "audit.view"),
    Route("/api/v1/audit/export.json", "GET", "/api/v1/audit/export.json" + RANGE, "audit.view"),
]


def targets(farm, role_users) -> dict:
    with transaction(farm.session_factory) as session:
        admin = session.get(User, role_users["admin"].id)
        create_license(session, admin, {"identifier": "LicenseRef-Access-Test", "name": "Access test license",
                                        "commercial_use": "allowed"})
        model_id = session.scalar(select(RegisteredModel.id).where(RegisteredModel.name == "tiny-sd"))
        event_id = session.scalar(select(AuditEvent.id).order_by(AuditEvent.id).limit(1))
        campaign_id = create_campaign_as(session, role_users["campaign_manager"], name="Compliance access",
                                         brand="Acme").id
    return {"compliance_license": "LicenseRef-Access-Test", "compliance_model_id": model_id,
            "compliance_event_id": event_id, "compliance_campaign_id": campaign_id}
