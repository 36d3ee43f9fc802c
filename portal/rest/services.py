"""REST: /services, OWT's management of services (tenants) by the super service.

In OWT one service, named in ``management_api.toml`` (``superserviceID``),
may create, list and delete services; any service may read itself. In
Tessera the super service is the server's default service (``[service] id``,
the one ``tessera serve`` creates and ``tessera service show`` prints): an
operator signs /services requests with its id and key, as with OWT's.

A service's key is never sent back (OWT sends its encrypted form, of no use
to a client); the caller chose it when creating the service.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from aiohttp import web

from tessera.conference.store import ServiceRecord

from .bodies import MAX_ID_LENGTH, expect_object
from .errors import ErrorCode, RestError, bad_request, forbidden
from .resource import ROOT, Resource, Route

logger = logging.getLogger(__name__)

SERVICE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_KEY_LENGTH = 512


class Services(Resource):
    """POST, GET (all or one) and DELETE of services."""

    def routes(self) -> list[Route]:
        return [
            ("POST", "/services", self.create_service, ROOT),
            ("GET", "/services", self.list_services, ROOT),
            ("GET", "/services/{service}", self.get_service, ROOT),
            ("DELETE", "/services/{service}", self.delete_service, ROOT),
        ]

    def _super_id(self) -> str:
        return self.context.super_service_id

    def _require_super(self, request: web.Request) -> ServiceRecord:
        caller = self._credentials(request).service
        if caller.id != self._super_id():
            raise forbidden(
                "Permission denied: only the super service (the server's default service) "
                "manages services"
            )
        return caller

    async def _named(self, request: web.Request) -> ServiceRecord:
        service_id = request.match_info["service"]
        found = (
            await self.conference.get_service(service_id)
            if 0 < len(service_id) <= MAX_ID_LENGTH
            else None
        )
        if found is None:
            raise RestError(404, ErrorCode.SERVICE_NOT_FOUND, "Service not found")
        return found

    async def _service_json(self, service: ServiceRecord) -> dict[str, Any]:
        """OWT's service object ``{_id, name, rooms}`` (rooms as room objects, as OWT's
        populated list) plus Tessera's settings of the service."""
        return {
            "_id": service.id,
            "name": service.id,
            "rooms": await self.conference.service_rooms(service.id),
            "allowedOrigins": list(service.allowed_origins),
            "adhocRooms": service.adhoc_rooms,
            "recording": service.recording,
            "peerTokens": service.peer_tokens,
        }

    async def create_service(self, request: web.Request) -> web.StreamResponse:
        caller = self._require_super(request)
        body = expect_object(await self._read_json(request))
        unknown = sorted(set(body) - {"name", "key"})
        if unknown:
            raise bad_request(
                f"{unknown[0]}: unknown field (expected name and key; other settings of a "
                "service are set with `tessera service`)"
            )
        name, key = body.get("name"), body.get("key")
        if not isinstance(name, str) or not SERVICE_ID.fullmatch(name):
            raise bad_request("name must be 1 to 64 letters, digits, '_' or '-' (the service id)")
        if (
            not isinstance(key, str)
            or not 0 < len(key) <= MAX_KEY_LENGTH
            or not key.isprintable()
            or any(c.isspace() for c in key)
        ):
            raise bad_request(
                f"key must be 1 to {MAX_KEY_LENGTH} printable characters without spaces"
            )
        service = ServiceRecord(id=name, key=key)
        await self.conference.create_service(service)
        logger.info("service created over REST", extra={"service": caller.id, "new_service": name})
        return web.json_response(await self._service_json(service))

    async def list_services(self, request: web.Request) -> web.StreamResponse:
        self._require_super(request)
        services = await self.conference.list_services()
        return web.json_response([await self._service_json(s) for s in services])

    async def get_service(self, request: web.Request) -> web.StreamResponse:
        caller = self._credentials(request).service
        service_id = request.match_info["service"]
        if caller.id not in (self._super_id(), service_id):
            raise forbidden("Permission denied: a service may read itself only")
        return web.json_response(await self._service_json(await self._named(request)))

    async def delete_service(self, request: web.Request) -> web.StreamResponse:
        caller = self._require_super(request)
        service = await self._named(request)
        if service.id == self._super_id():
            raise forbidden("The super service cannot be deleted")
        await self.conference.delete_service(service.id)
        # Its peers' sockets close too (the room service closed their rooms).
        await self.context.close_peers(service.id)
        logger.info(
            "service deleted over REST", extra={"service": caller.id, "deleted_service": service.id}
        )
        return web.Response(text="Service deleted", content_type="text/plain", charset="utf-8")
