"""Domain errors shared by `geo` and `campaigns`: HTTP-free, mapped to problem+json by `app`.

One rule: an error names what was wrong in the user's terms (a field path, a resource).
"""

from __future__ import annotations


class NotFound(LookupError):
    """An id that does not exist, or that the caller may not see."""

    def __init__(self, resource: str, ident: object) -> None:
        super().__init__(f"{resource} {ident} does not exist")
        self.resource = resource


class Conflict(Exception):
    """The request is valid but collides with the current state."""


class InvalidField(ValueError):
    """Input that decodes but breaks a rule; `field` is the JSON path of the offending value."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
