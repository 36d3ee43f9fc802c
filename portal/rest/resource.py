"""What every REST resource shares: the server, the caller, the room in the path."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from tessera.conference.api import Conference

from .auth import CREDENTIALS, Credentials
from .bodies import path_id, read_json
from .errors import ErrorCode

# (method, path under the prefix, handler, prefixes): one route of a resource.
Route = tuple[str, str, Handler, tuple[str, ...]]
# OWT 5.x mounts every /v1 route under /v1.1 too (its v1.1 router ends with the v1 router).
BOTH = ("/v1", "/v1.1")
# OWT's /services routes have no version prefix.
ROOT = ("",)


@dataclass(frozen=True)
class RestContext:
    """What the REST API works with: the room service, and what OWT's API adds to it."""

    conference: Conference
    # The service that manages services (/services): the server's default service.
    super_service_id: str
    # Closes the PeerJS sockets of a service (when it is deleted).
    close_peers: Callable[[str], Awaitable[None]]


def empty_response() -> web.Response:
    """OWT's answer to a DELETE (Express ``res.send()``): 200 with an empty body."""
    return web.Response(status=200, body=b"")


class Resource(ABC):
    """Base of a REST resource: its routes, and the lookups its handlers share.

    Handlers call the room service (``self.conference``); its refusals
    (ConferenceError, with OWT's code and a status) become JSON errors in the
    middleware.
    """

    def __init__(self, context: RestContext) -> None:
        self.context = context
        self.conference = context.conference

    @abstractmethod
    def routes(self) -> list[Route]:
        """The resource's (method, path, handler, versions)."""

    @staticmethod
    def _credentials(request: web.Request) -> Credentials:
        return request[CREDENTIALS]

    def _service_id(self, request: web.Request) -> str:
        return self._credentials(request).service.id

    @staticmethod
    async def _read_json(request: web.Request) -> Any:
        return await read_json(request)

    async def _room(self, request: web.Request) -> str:
        """The id of the room the path names: a room id, or a room name only one room has."""
        ref = path_id(request, "room", ErrorCode.ROOM_NOT_FOUND, "Room")
        return await self.conference.room_id(self._service_id(request), ref)
