"""The gallery: thumbnails of the assets a user may see, filtered, paged by keyset.

A page costs the same number of SQL statements whatever its size and depth: the user, the
filter menus (farm.assets.gallery.filter_choices), the page (list_assets: one or two), and one
more only when following a "newer" link (farm.assets.paging). Older pages are keyed by `before`
(the last id shown), newer ones by `after` (the first id shown), which is turned back into the
`before` of that page, so every page the gallery shows has one URL form.
"""

from __future__ import annotations

from typing import Any, Mapping

from flask import Blueprint, render_template, request, url_for

from dashboard.auth import current_user, requires
from dashboard.helpers import db_transaction
from farm.assets.gallery import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, GalleryFilters, filter_choices, list_assets
from farm.assets.paging import before_for_newer
from farm.errors import InvalidInput

blueprint = Blueprint("gallery", __name__, url_prefix="/gallery")

FILTER_FIELDS = ("campaign_id", "job_id", "approval_state", "model_id", "channel_format")


def page_limit(value: Any, default: int = DEFAULT_PAGE_SIZE) -> int:
    """The `limit` query parameter as a page size (InvalidInput("limit") when it is not one)."""
    if value is None or value == "":
        return default
    text = str(value).strip()
    if not text.isdigit() or not 1 <= int(text) <= MAX_PAGE_SIZE:
        raise InvalidInput("limit", f"must be a whole number from 1 to {MAX_PAGE_SIZE}, got {value!r}")
    return int(text)


def paging_links(endpoint: str, args: Mapping[str, Any], page, before: int | None, limit: int,
                 default_limit: int) -> dict[str, str | None]:
    """URLs of the older and newer pages (None where there is none), keeping the filters."""
    keep = {name: args.get(name) for name in FILTER_FIELDS if args.get(name)}
    if limit != default_limit:
        keep["limit"] = limit
    older = url_for(endpoint, **keep, before=page.next_cursor) if page.has_more else None
    # A page reached with a cursor always has a newer page: the one it was reached from.
    newer = url_for(endpoint, **keep, after=page.items[0].asset_id) if before is not None and page.items else None
    if before is not None and not page.items:
        newer = url_for(endpoint, **keep)
    return {"older": older, "newer": newer, "first": url_for(endpoint, **keep) if before is not None else None}


def load_page(db, user, args: Mapping[str, Any], *, fixed: Mapping[str, Any] | None = None,
              default_limit: int = DEFAULT_PAGE_SIZE):
    """(filters, page, before, limit) for the query string `args`; InvalidInput names the field.
    `fixed` filters override the query string (the review queue shows pending assets only)."""
    filters = GalleryFilters.from_query({**{name: args.get(name) for name in FILTER_FIELDS}, **(fixed or {})})
    limit = page_limit(args.get("limit"), default_limit)
    before = args.get("before") or None
    if args.get("after"):
        if before is not None:
            raise InvalidInput("after", "give either before or after, not both")
        before = before_for_newer(db, user, filters, args.get("after"), limit=limit)
    page = list_assets(db, user, filters, before=before, limit=limit)
    return filters, page, before, limit


@blueprint.get("/")
@requires("campaigns.view")
def index():
    user = current_user()
    values = {name: request.args.get(name, "") for name in FILTER_FIELDS}
    error = page = None
    links: dict[str, str | None] = {}
    status = 200
    with db_transaction() as db:
        choices = filter_choices(db, user)
        try:
            filters, page, before, limit = load_page(db, user, request.args)
        except InvalidInput as bad:
            error, status = bad, 400
        else:
            links = paging_links("gallery.index", request.args, page, before, limit, DEFAULT_PAGE_SIZE)
    campaign_names = {c.value: c.label for c in choices.campaigns}
    return render_template("gallery/index.html", page=page, choices=choices, values=values, error=error,
                           links=links, campaign_names=campaign_names,
                           filtered=any(values.values())), status
