"""REST errors: the refusal every handler raises, with OWT's error codes (conference.errors)."""

from __future__ import annotations

from tessera.conference.errors import ErrorCode

__all__ = ["ErrorCode", "RestError", "bad_request", "forbidden", "not_implemented", "unauthorized"]


class RestError(Exception):
    """A refused request: HTTP status, OWT error code and a message naming what is wrong."""

    def __init__(self, status: int, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def bad_request(message: str, status: int = 400) -> RestError:
    return RestError(status, ErrorCode.BAD_REQUEST, message)


def unauthorized(message: str) -> RestError:
    return RestError(401, ErrorCode.AUTHENTICATION, message)


def forbidden(message: str) -> RestError:
    return RestError(403, ErrorCode.PERMISSION_DENIED, message)


def not_implemented(message: str) -> RestError:
    """A route of OWT's API that Tessera does not serve (501, code 2001 as OWT's own
    "Not implemented" answer)."""
    return RestError(501, ErrorCode.UNEXPECTED, message)
