"""The dashboard's app factory. It calls farm services only; no SQL or rendering lives here."""

from __future__ import annotations

import mimetypes

from flask import Flask, abort, render_template, Response

from farm.context import FarmContext
from farm.errors import InvalidInput
from farm.jobs.queries import recent_assets, render_counts
from farm.storage import ObjectMissing


def create_app(farm: FarmContext) -> Flask:
    app = Flask(__name__)
    app.extensions["farm"] = farm

    @app.get("/")
    def index():
        return render_template(
            "index.html", assets=recent_assets(farm.session_factory), counts=render_counts(farm.session_factory),
        )

    @app.get("/objects/<path:key>")
    def stored_object(key: str):
        try:
            data = farm.storage.get(key)
        except (ObjectMissing, InvalidInput):
            abort(404)
        content_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
        # Keys are content hashes, so an object never changes: cache it for good.
        return Response(data, content_type=content_type,
                        headers={"Cache-Control": "public, max-age=31536000, immutable"})

    @app.get("/healthz")
    def health():
        return {"status": "ok"}

    return app
