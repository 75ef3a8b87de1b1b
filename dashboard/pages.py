"""The home page, stored objects (images, thumbnails) and the health check."""

from __future__ import annotations

import mimetypes

from flask import Blueprint, Response, abort, render_template

from dashboard.auth import public, requires
from dashboard.helpers import current_farm
from farm.errors import InvalidInput
from farm.jobs.queries import recent_assets, render_counts
from farm.storage import ObjectMissing

blueprint = Blueprint("pages", __name__)


@blueprint.get("/")
@requires("campaigns.view")
def index():
    farm = current_farm()
    return render_template("index.html", assets=recent_assets(farm.session_factory),
                           counts=render_counts(farm.session_factory))


@blueprint.get("/objects/<path:key>")
@requires("campaigns.view")
def stored_object(key: str):
    try:
        data = current_farm().storage.get(key)
    except (ObjectMissing, InvalidInput):
        abort(404)
    content_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
    # Keys are content hashes, so an object never changes: the browser may keep it for good
    # (privately: it is only for signed-in users).
    return Response(data, content_type=content_type,
                    headers={"Cache-Control": "private, max-age=31536000, immutable"})


@blueprint.get("/healthz")
@public
def health():
    return {"status": "ok"}
