"""The one error the room service raises, with OWT's error code and an HTTP status.

Each front end turns it into its own answer: ``("error", message)`` on Socket.IO, a
JSON 4xx with ``code`` on REST, ``EXPIRE`` with the message in the peer model. The
message names the problem and is sent to clients as it is (some compare it:
"Stream does NOT exist", "Source stream loss").
"""

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


class ConferenceError(Exception):
    """A refused request: a message naming the problem, OWT's code and an HTTP status."""

    def __init__(
        self, message: str, code: ErrorCode = ErrorCode.BAD_REQUEST, status: int = 400
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status

    def __reduce__(self) -> tuple[type[ConferenceError], tuple[str, ErrorCode, int]]:
        # Keeps code and status when the error is pickled (or carried by a bus).
        return (type(self), (self.message, self.code, self.status))


def not_found(message: str, code: ErrorCode = ErrorCode.NOT_FOUND) -> ConferenceError:
    return ConferenceError(message, code, 404)


def forbidden(message: str) -> ConferenceError:
    return ConferenceError(message, ErrorCode.PERMISSION_DENIED, 403)


def conflict(message: str) -> ConferenceError:
    """A request that cannot be done in the state things are in (409)."""
    return ConferenceError(message, ErrorCode.BAD_REQUEST, 409)
