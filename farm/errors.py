"""Domain errors shared by the core, the CLI and the dashboard.

Every error about bad input names the field it is about, so the CLI, the API and the
forms can all point at it.
"""


class FarmError(Exception):
    """Base class for errors the farm raises on purpose."""


class InvalidInput(FarmError, ValueError):
    """A value given by a user (CLI flag, API field, form field, config key) is not acceptable."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class NotFound(FarmError, LookupError):
    """A named or numbered thing does not exist."""

    def __init__(self, what: str, key: object):
        super().__init__(f"{what} {key!r} not found")
        self.what = what
        self.key = key
