"""API: campaigns (list, create, get, change, archive / unarchive), their members, and the channel
formats a campaign can deliver. A campaign the caller cannot see is a 404, as if it did not exist."""

from __future__ import annotations

from dashboard.api.blueprint import api, api_body, api_query
from dashboard.auth import current_user
from dashboard.helpers import db_transaction
from farm.campaigns.formats import load_channel_formats
from farm.campaigns import service
from farm.errors import InvalidInput, NotFound

TAGS = ("campaigns",)
DATE = {"type": ["string", "null"], "format": "date", "description": "YYYY-MM-DD"}

CAMPAIGN = api.schema("Campaign", {
    "type": "object",
    "required": ["id", "name", "brand", "status", "commercial_use", "due_date", "default_model", "style_suffix",
                 "style_negative", "channel_formats", "owner_id", "created_at", "updated_at"],
    "properties": {
        "id": {"type": "integer"},
        "name": {"type": "string"},
        "brand": {"type": "string"},
        "status": {"type": "string", "enum": ["active", "archived"]},
        "commercial_use": {"type": "boolean"},
        "due_date": DATE,
        "default_model": {"type": ["string", "null"], "description": "A checkpoint's name; null: the farm's default."},
        "style_suffix": {"type": "string", "description": "Appended to every prompt of the campaign's jobs."},
        "style_negative": {"type": "string", "description": "Appended to every negative prompt."},
        "channel_formats": {"type": "array", "items": {"type": "string"},
                            "description": "Names from GET /api/v1/channel-formats."},
        "owner_id": {"type": ["integer", "null"]},
        "created_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": ["string", "null"], "format": "date-time"},
    },
})
CAMPAIGN_FIELDS = {
    "name": {"type": "string", "minLength": 1, "maxLength": 200},
    "brand": {"type": "string", "minLength": 1, "maxLength": 200},
    "commercial_use": {"type": "boolean"},
    "due_date": DATE,
    "default_model": {"type": ["string", "null"]},
    "style_suffix": {"type": "string", "maxLength": 2000},
    "style_negative": {"type": "string", "maxLength": 2000},
    "channel_formats": {"type": "array", "items": {"type": "string"}},
}
CAMPAIGN_CREATE = api.schema("CampaignCreate", {
    "type": "object", "required": ["name", "brand"], "additionalProperties": False, "properties": CAMPAIGN_FIELDS,
})
CAMPAIGN_CHANGES = api.schema("CampaignChanges", {
    "type": "object", "additionalProperties": False, "properties": CAMPAIGN_FIELDS,
    "description": "Only the fields given change.",
})
CAMPAIGN_LIST = api.schema("CampaignList", {
    "type": "object", "required": ["campaigns"],
    "properties": {"campaigns": {"type": "array", "items": CAMPAIGN}},
})
MEMBER = api.schema("CampaignMember", {
    "type": "object", "required": ["user_id", "name", "role", "added_at"],
    "properties": {"user_id": {"type": "integer"}, "name": {"type": "string"}, "role": {"type": "string"},
                   "added_at": {"type": "string", "format": "date-time"}},
})
MEMBER_LIST = api.schema("CampaignMemberList", {
    "type": "object", "required": ["members"], "properties": {"members": {"type": "array", "items": MEMBER}},
})
MEMBER_ADD = api.schema("CampaignMemberAdd", {
    "type": "object", "required": ["user_id"], "additionalProperties": False,
    "properties": {"user_id": {"type": "integer"}},
})
CHANNEL_FORMAT_LIST = api.schema("ChannelFormatList", {
    "type": "object", "required": ["formats"],
    "properties": {"formats": {"type": "array", "items": {
        "type": "object", "required": ["name", "label", "width", "height"],
        "properties": {"name": {"type": "string"}, "label": {"type": "string"},
                       "width": {"type": "integer"}, "height": {"type": "integer"}},
    }}},
})


@api.operation("GET", "/campaigns", summary="The campaigns the caller can see, by name", permission="campaigns.view",
               response=CAMPAIGN_LIST, tags=TAGS,
               query={"include_archived": {"type": "boolean", "default": False}})
def list_campaigns():
    with db_transaction() as db:
        campaigns = service.list_campaigns(db, current_user(), include_archived=api_query()["include_archived"])
    return {"campaigns": [c.to_dict() for c in campaigns]}


@api.operation("POST", "/campaigns", summary="Create a campaign owned by the caller", permission="campaigns.edit",
               request=CAMPAIGN_CREATE, response=CAMPAIGN, status=201, tags=TAGS)
def create_campaign():
    with db_transaction() as db:
        campaign = service.create_campaign_as(db, current_user(), **api_body())
    return campaign.to_dict(), 201


@api.operation("GET", "/campaigns/<int:campaign_id>", summary="One campaign", permission="campaigns.view",
               response=CAMPAIGN, tags=TAGS)
def get_campaign(campaign_id: int):
    with db_transaction() as db:
        return service.get_campaign_info(db, current_user(), campaign_id).to_dict()


@api.operation("PATCH", "/campaigns/<int:campaign_id>", summary="Change a campaign's fields",
               permission="campaigns.edit", request=CAMPAIGN_CHANGES, response=CAMPAIGN, tags=TAGS)
def update_campaign(campaign_id: int):
    with db_transaction() as db:
        return service.update_campaign(db, current_user(), campaign_id, api_body()).to_dict()


@api.operation("POST", "/campaigns/<int:campaign_id>/archive", summary="Archive a campaign (readable, no new jobs)",
               permission="campaigns.edit", response=CAMPAIGN, tags=TAGS)
def archive_campaign(campaign_id: int):
    with db_transaction() as db:
        return service.archive_campaign(db, current_user(), campaign_id).to_dict()


@api.operation("POST", "/campaigns/<int:campaign_id>/unarchive", summary="Make an archived campaign active again",
               permission="campaigns.edit", response=CAMPAIGN, tags=TAGS)
def unarchive_campaign(campaign_id: int):
    with db_transaction() as db:
        return service.unarchive_campaign(db, current_user(), campaign_id).to_dict()


@api.operation("GET", "/campaigns/<int:campaign_id>/members", summary="A campaign's members",
               permission="campaigns.view", response=MEMBER_LIST, tags=TAGS)
def list_campaign_members(campaign_id: int):
    with db_transaction() as db:
        return {"members": [m.to_dict() for m in service.list_members(db, current_user(), campaign_id)]}


@api.operation("POST", "/campaigns/<int:campaign_id>/members", summary="Add a member (idempotent)",
               permission="campaigns.edit", request=MEMBER_ADD, response=MEMBER_LIST, tags=TAGS,
               description="Members who are campaign managers or reviewers see the campaign. Answers the "
                           "members afterwards; adding a member twice changes nothing.")
def add_campaign_member(campaign_id: int):
    user, member_id = current_user(), api_body()["user_id"]
    with db_transaction() as db:
        try:
            service.add_member(db, user, campaign_id, member_id)
        except NotFound as missing:
            if missing.what != "user":
                raise
            raise InvalidInput("user_id", f"there is no user {member_id}") from None
        return {"members": [m.to_dict() for m in service.list_members(db, user, campaign_id)]}


@api.operation("DELETE", "/campaigns/<int:campaign_id>/members/<int:user_id>", summary="Remove a member",
               permission="campaigns.edit", response=MEMBER_LIST, tags=TAGS)
def remove_campaign_member(campaign_id: int, user_id: int):
    user = current_user()
    with db_transaction() as db:
        service.remove_member(db, user, campaign_id, user_id)
        return {"members": [m.to_dict() for m in service.list_members(db, user, campaign_id)]}


@api.operation("GET", "/channel-formats", summary="The channel formats campaigns and jobs can name",
               permission="campaigns.view", response=CHANNEL_FORMAT_LIST, tags=TAGS)
def list_channel_formats():
    return {"formats": [f.to_dict() for f in load_channel_formats().values()]}
