"""REST: /rooms/{room}/tokens, join tokens issued for an application server."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from .bodies import checked_name, expect_object
from .errors import bad_request
from .resource import BOTH, Resource, Route

logger = logging.getLogger(__name__)


class Tokens(Resource):
    """POST a join token for a user and role of the room.

    The answer's body is the token itself (``text/plain``), as OWT's: an
    application server hands it to ``ConferenceClient.join`` unchanged.
    """

    def routes(self) -> list[Route]:
        return [
            ("POST", "/rooms/{room}/tokens", self.create_token, BOTH),
        ]

    async def create_token(self, request: web.Request) -> web.StreamResponse:
        credentials = self._credentials(request)
        service = credentials.service
        room_id = await self._room(request)
        body = expect_object(await self._read_json(request))
        unknown = sorted(set(body) - {"user", "role", "preference"})
        if unknown:
            raise bad_request(f"{unknown[0]}: unknown field (expected user, role, preference)")
        # As in OWT, MAuth's mauth_username/mauth_role name them instead of the body.
        user = checked_name(_one_of("user", credentials.user, body.get("user")), "user")
        role = _one_of("role", credentials.role, body.get("role"))
        if not isinstance(role, str) or not role:
            raise bad_request("role must be a non-empty string")
        _check_preference(body.get("preference"))
        issued = await self.conference.issue_token(service.id, room_id, user, role)
        logger.info(
            "token issued",
            extra={"service": service.id, "room": room_id, "user": user, "role": role},
        )
        return web.Response(text=issued.token, content_type="text/plain", charset="utf-8")


def _one_of(field: str, from_header: str | None, from_body: Any) -> Any:
    """The header's value if it has one (OWT's precedence); both and different is an error."""
    if from_header is None:
        return from_body
    if from_body is not None and from_body != from_header:
        raise bad_request(
            f"{field}: the body's {str(from_body)[:64]!r} differs from mauth_{field} "
            f"{from_header[:64]!r}; give one of them"
        )
    return from_header


def _check_preference(preference: Any) -> None:
    """OWT's ``{isp, region}`` portal preference: checked; one portal serves every token."""
    if preference is None:
        return
    if not isinstance(preference, dict):
        raise bad_request("preference must be an object (OWT's {isp, region})")
    unknown = sorted(set(preference) - {"isp", "region"})
    if unknown:
        raise bad_request(f"preference.{unknown[0]}: unknown field (expected isp, region)")
    for key in ("isp", "region"):
        if key in preference and not isinstance(preference[key], str):
            raise bad_request(f"preference.{key} must be a string")
