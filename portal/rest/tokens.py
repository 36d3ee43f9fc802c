"""REST: /rooms/{room}/tokens, join tokens issued for an application server."""

from __future__ import annotations

import logging

from aiohttp import web

from .bodies import checked_name, expect_object
from .errors import bad_request
from .resource import V1, Resource, Route

logger = logging.getLogger(__name__)


class Tokens(Resource):
    """POST a join token for a user and role of the room."""

    def routes(self) -> list[Route]:
        return [
            ("POST", "/rooms/{room}/tokens", self.create_token, V1),
        ]

    async def create_token(self, request: web.Request) -> web.StreamResponse:
        credentials = self._credentials(request)
        service = credentials.service
        ref = self._room(request)
        body = expect_object(await self._read_json(request))
        unknown = sorted(set(body) - {"user", "role", "preference"})
        if unknown:
            raise bad_request(f"{unknown[0]}: unknown field (expected user, role, preference)")
        # As in OWT, MAuth's mauth_username/mauth_role may name them instead of the body.
        user = checked_name(body.get("user", credentials.user), "user")
        role = body.get("role", credentials.role)
        if not isinstance(role, str) or not role:
            raise bad_request("role must be a non-empty string")
        preference = body.get("preference")
        if preference is not None and not isinstance(preference, dict):
            raise bad_request("preference must be an object (OWT's {isp, region})")
        try:
            token = self.server.join_token(service, ref.id, ref.options(), user, role)
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        logger.info(
            "token issued",
            extra={"service": service.id, "room": ref.id, "user": user, "role": role},
        )
        return web.json_response(token)
