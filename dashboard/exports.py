"""Exports: a campaign's approved assets as a ZIP with its manifest (farm.exports.campaign_zip).

The archive is written to a temporary file, not to memory, while the database transaction that
reads the assets and records the `campaign.exported` audit event is open; the file is then sent
in chunks and deleted when the response closes. So a campaign of thousands of approved images
costs one image of memory, and an export that fails half-way sends nothing and records nothing.
"""

from __future__ import annotations

import tempfile
from typing import IO

from flask import Blueprint, Response, flash, redirect, render_template, request, send_file, url_for

from dashboard.auth import current_user, requires, safe_next
from dashboard.helpers import current_farm, db_transaction
from farm.db.models import User
from farm.errors import InvalidInput
from farm.exports.campaign_zip import ExportFailed, ExportSummary, export_campaign
from farm.exports.overview import exportable_campaigns

blueprint = Blueprint("exports", __name__, url_prefix="/exports")


def write_export(user: User, campaign_id: int) -> tuple[IO[bytes], ExportSummary]:
    """The campaign's ZIP in a temporary file (rewound, deleted on close) and its summary.

    Raises what export_campaign raises: NotFound, InvalidInput("campaign", ...) when nothing is
    approved, ExportFailed; the temporary file is gone by then."""
    spool = tempfile.TemporaryFile(prefix="farm-export-", suffix=".zip")
    try:
        with db_transaction() as db:
            summary = export_campaign(db, current_farm().storage, user, campaign_id, spool)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool, summary


def zip_response(spool: IO[bytes], summary: ExportSummary) -> Response:
    response = send_file(spool, mimetype="application/zip", as_attachment=True, download_name=summary.filename,
                         max_age=0)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Export-Assets"] = str(summary.assets)
    # Approved assets left out, flagged for re-review (manifest.json's `withheld` says which and why).
    response.headers["X-Export-Withheld"] = str(len(summary.withheld))
    return response


@blueprint.get("/")
@requires("exports.create")
def index():
    with db_transaction() as db:
        campaigns = exportable_campaigns(db, current_user())
    return render_template("exports/index.html", campaigns=campaigns)


@blueprint.post("/campaigns/<int:campaign_id>")
@requires("exports.create")
def campaign_zip(campaign_id: int):
    back = safe_next(request.form.get("next") or url_for("exports.index"))
    try:
        spool, summary = write_export(current_user(), campaign_id)
    except InvalidInput as error:
        flash(f"Nothing to export: {error.message}.", "error")
        return redirect(back)
    except ExportFailed as error:
        flash(f"The export stopped and nothing was sent: {error}. Ask ops to check the object store.", "error")
        return redirect(back)
    return zip_response(spool, summary)
