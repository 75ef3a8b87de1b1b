"""The REST API under /api/v1. Each route module declares its routes on `api` when imported:
add a new module to the import below."""

from dashboard.api.blueprint import api, api_body, api_query  # noqa: F401
from dashboard.api import accounts, assets, docs, exports, jobs, reviews  # noqa: F401,E402  (route modules)
from dashboard.api import batches, campaigns, templates  # noqa: F401,E402
from dashboard.api import audit, licenses, models  # noqa: F401,E402
