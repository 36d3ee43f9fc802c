"""REST errors: OWT's error codes and the refusal every handler raises."""

from __future__ import annotations

from enum import IntEnum


class ErrorCode(IntEnum):
    """OWT's error codes (RESTAPI.md, section 3)."""

    NOT_FOUND = 1001
    SERVICE_NOT_FOUND = 1002
    ROOM_NOT_FOUND = 1003
    STREAM_NOT_FOUND = 1004
    PARTICIPANT_NOT_FOUND = 1005
    AUTHENTICATION = 1101
    PERMISSION_DENIED = 1102
    BAD_REQUEST = 1301
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
