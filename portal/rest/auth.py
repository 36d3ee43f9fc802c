"""Who is calling the REST API: OWT's MAuth signatures, or a Bearer service key or JWT."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import jwt
from aiohttp import web

from tessera.conference.store import ServiceRecord

from ..mauth import AuthError, NonceCache, parse_mauth, verify_mauth
from .errors import ErrorCode, RestError, unauthorized

logger = logging.getLogger(__name__)

MAX_BEARER_LENGTH = 8192
# Clock difference tolerated for the iat/exp/nbf of a Bearer JWT, in seconds.
JWT_LEEWAY = 60
_CHALLENGE = 'MAuth realm="tessera", Bearer realm="tessera"'
# JWT claims of a join token (portal.tokens): such a JWT grants a seat in a room, not the API.
_JOIN_TOKEN_CLAIMS = ("room", "user", "role")


@dataclass(frozen=True)
class Credentials:
    """Who is calling: the service, and with MAuth an optional user and role for tokens."""

    service: ServiceRecord
    method: str
    user: str | None = None
    role: str | None = None


CREDENTIALS = web.RequestKey("tessera_rest_credentials", Credentials)


class ServiceDirectory(Protocol):
    """Where the services are looked up (the room service)."""

    async def get_service(self, service_id: str) -> ServiceRecord | None: ...

    async def all_services(self) -> list[ServiceRecord]: ...


class Authenticator:
    """Finds the calling service of a request and checks its Origin."""

    def __init__(
        self, services: ServiceDirectory, clock: Callable[[], float], max_skew_ms: int
    ) -> None:
        self.services = services
        self.clock = clock
        self.max_skew_ms = max_skew_ms
        self.nonces = NonceCache(max_skew_ms=max_skew_ms)

    async def authenticate(self, request: web.Request) -> Credentials:
        """The calling service, from an MAuth or Bearer Authorization header."""
        header = request.headers.get("Authorization", "").strip()
        if not header:
            raise unauthorized("Authorization header is missing (MAuth or Bearer)")
        scheme, _, rest = header.partition(" ")
        scheme = scheme.lower()
        if scheme == "mauth":
            return await self._mauth(header)
        if scheme == "bearer":
            return await self._bearer(rest.strip())
        raise unauthorized(
            f"Authorization scheme {scheme[:20]!r} is not supported (MAuth or Bearer)"
        )

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def _mauth(self, header: str) -> Credentials:
        try:
            parsed = parse_mauth(header)
            service = await self.services.get_service(parsed.service_id)
            if service is None:
                raise AuthError("mauth_serviceid names no service")
            now = self._now_ms()
            verify_mauth(parsed, service.key, now, self.max_skew_ms)
            self.nonces.check(service.id, parsed.cnonce, parsed.timestamp, now)
            return Credentials(service, "mauth", user=parsed.user, role=parsed.role)
        except AuthError as exc:
            raise unauthorized(f"MAuth: {exc}") from None

    async def _bearer(self, token: str) -> Credentials:
        if not token:
            raise unauthorized("Bearer token is missing")
        if len(token) > MAX_BEARER_LENGTH:
            raise unauthorized("Bearer token is too long")
        service = await self._service_by_key(token)
        if service is not None:
            return Credentials(service, "key")
        if token.count(".") == 2:
            return Credentials(await self._service_by_jwt(token), "jwt")
        raise unauthorized("Bearer token is neither a service key nor a JWT")

    async def _service_by_key(self, token: str) -> ServiceRecord | None:
        # Compare with every key, in constant time each, so timing tells nothing.
        found = None
        candidate = token.encode("utf-8", "surrogatepass")
        for service in await self.services.all_services():
            if hmac.compare_digest(service.key.encode("utf-8"), candidate) and service.key:
                found = service
        return found

    async def _service_by_jwt(self, token: str) -> ServiceRecord:
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, options={"verify_signature": False})
        except (jwt.PyJWTError, ValueError, TypeError):
            raise unauthorized("Bearer token is neither a service key nor a valid JWT") from None
        if header.get("alg") != "HS256":
            raise unauthorized("Bearer JWT must be signed with HS256")
        issuer = claims.get("iss")
        if not isinstance(issuer, str) or not issuer:
            raise unauthorized("Bearer JWT has no 'iss' claim naming the service")
        service = await self.services.get_service(issuer)
        if service is None or not service.key:
            raise unauthorized("Bearer JWT 'iss' names no service")
        try:
            jwt.decode(
                token,
                service.key,
                algorithms=["HS256"],
                options={"require": ["exp", "iss"]},
                leeway=JWT_LEEWAY,
            )
        except jwt.ExpiredSignatureError:
            raise unauthorized("Bearer JWT has expired") from None
        except jwt.ImmatureSignatureError:
            raise unauthorized("Bearer JWT is not yet valid") from None
        except jwt.MissingRequiredClaimError as exc:
            raise unauthorized(f"Bearer JWT has no {exc.claim!r} claim") from None
        except jwt.InvalidSignatureError:
            raise unauthorized("Bearer JWT signature does not match") from None
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise unauthorized(f"Bearer JWT is invalid: {exc}") from None
        if any(claim in claims for claim in _JOIN_TOKEN_CLAIMS):
            # A join token's JWT is signed with the same key; it must not open the API.
            raise unauthorized("A join token cannot be used for the REST API")
        return service

    @staticmethod
    def check_origin(service: ServiceRecord, origin: str | None) -> None:
        allowed = service.allowed_origins
        if origin and allowed and "*" not in allowed and origin not in allowed:
            raise RestError(
                403, ErrorCode.PERMISSION_DENIED, f"Origin {origin[:200]} is not allowed"
            )
