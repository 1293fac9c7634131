"""The embedded server's expected failures: the bottom of its import graph, so that every module may raise them."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An expected failure, answered as ``{"errors": [{"message": ...}]}`` with a 4xx status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def not_found(kind: str, ident: Any) -> ApiError:
    """The real server's wording, which the client raises as is."""
    return ApiError(404, f"Could not find {kind} with id='{ident}'")
