"""API: a campaign's approved assets as a ZIP (images, manifest.csv, manifest.json)."""

from __future__ import annotations

from flask import jsonify

from dashboard.api.blueprint import api
from dashboard.auth import current_user
from dashboard.exports import write_export, zip_response
from farm.exports.campaign_zip import MANIFEST_COLUMNS, ExportFailed


@api.operation("POST", "/campaigns/<int:campaign_id>/export", summary="Export the campaign's approved assets",
               permission="exports.create", response={"type": "string", "format": "binary"},
               content_type="application/zip", tags=("exports",),
               description="A ZIP of the approved images under images/ with manifest.csv and manifest.json "
                           f"({', '.join(MANIFEST_COLUMNS)}) and LICENSES.txt (each license once: its models, the "
                           "attributions to show, the use restrictions to pass on). Approved assets flagged for "
                           "re-review are left out, listed in manifest.json's `withheld` with the reason "
                           "(header X-Export-Withheld counts them). 400 (field `campaign`) when nothing is "
                           "approved, or every approved asset is flagged. Audited as campaign.exported.")
def export_campaign_zip(campaign_id: int):
    try:
        spool, summary = write_export(current_user(), campaign_id)
    except ExportFailed as error:
        response = jsonify({"error": {"message": f"the export stopped and nothing was sent: {error}"}})
        response.status_code = 500
        return response
    return zip_response(spool, summary)
