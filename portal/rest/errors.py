"""REST errors: OWT's error codes and the refusal every handler raises."""

from __future__ import annotations

from enum import IntEnum


class ErrorCode(IntEnum):
    """OWT's error codes, as its management API sends them (``errors.js``).

    RESTAPI.md's table lists 1201 as "failed to call cluster" and 1301 as
    "request data error"; OWT's code sends them the other way round
    (``BadRequestError`` 1201, ``CloudError`` 1301), and so does Tessera. The
    not-found codes are the table's: OWT's code means to pick them from the
    message but its test is inverted (``indexOf`` taken as a boolean), so in
    practice it answers 1005 (1004 for a participant) whatever was not found.
    """

    NOT_FOUND = 1001
    SERVICE_NOT_FOUND = 1002
    ROOM_NOT_FOUND = 1003
    STREAM_NOT_FOUND = 1004
    PARTICIPANT_NOT_FOUND = 1005
    AUTHENTICATION = 1101
    PERMISSION_DENIED = 1102
    BAD_REQUEST = 1201
    CLOUD = 1301
    UNEXPECTED = 2001


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
