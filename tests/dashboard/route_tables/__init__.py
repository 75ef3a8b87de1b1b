"""The route-access table, area by area (see tests/dashboard/test_route_access.py).

Each area's module defines ROUTES (a Route per URL rule and method it adds) and
`targets(farm, role_users) -> dict` making what its example URLs name, e.g. {"campaign_id": 3}.
Make targets every role can see (add the users of every role as campaign members), so the
matrix tests the role, not campaign visibility. Every module here is picked up.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Route:
    rule: str
    method: str
    example: str  # an URL; {placeholders} are filled from the targets
    permission: str
    form: dict = field(default_factory=dict)  # sent with POSTs; chosen to change nothing much

    @property
    def is_api(self) -> bool:
        return self.rule.startswith("/api/")


_modules = [importlib.import_module(f"{__name__}.{info.name}") for info in pkgutil.iter_modules(__path__)]
AREA_ROUTES: list[Route] = [route for module in _modules for route in module.ROUTES]
AREA_TARGETS = [module.targets for module in _modules]
