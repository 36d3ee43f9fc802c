"""OWT's REST client, as its ``rest.js`` (the sample app server's ``icsREST``) calls the API.

Written from OWT's client, not from Tessera's server code, so that tests check
Tessera against what an OWT application server really sends: the MAuth header
with the realm of OWT's samples, a random hex cnonce, a millisecond timestamp,
``base64(hex(HMAC-SHA256(key, "timestamp,cnonce")))``, and an optional user and
role (the user base64-encoded, both signed).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

import aiohttp


@dataclass
class Answer:
    """One HTTP answer: status, the bare Content-Type, the body as text, and the JSON if any."""

    status: int
    content_type: str | None
    text: str

    @property
    def json(self) -> Any:
        assert self.content_type == "application/json", (self.content_type, self.text)
        return json.loads(self.text)


def mauth_header(
    service_id: str, key: str, *, user: str | None = None, role: str | None = None
) -> str:
    """The Authorization header of OWT's REST client for one request."""
    timestamp = int(time.time() * 1000)
    cnonce = secrets.token_hex(8)
    to_sign = f"{timestamp},{cnonce}"
    header = "MAuth realm=http://marte3.dit.upm.es,mauth_signature_method=HMAC_SHA256"
    if user is not None and role is not None:
        username = base64.b64encode(user.encode("utf-8")).decode("ascii")
        header += f",mauth_username={username},mauth_role={role}"
        to_sign += f",{username},{role}"
    digest = hmac.new(key.encode("utf-8"), to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    signature = base64.b64encode(digest.encode("ascii")).decode("ascii")
    header += (
        f",mauth_serviceid={service_id},mauth_cnonce={cnonce},mauth_timestamp={timestamp}"
        f",mauth_signature={signature}"
    )
    return header


class OwtRest:
    """Calls ``{url}/{resource}`` as OWT's ``rest.js`` ``send()`` does."""

    def __init__(self, session: aiohttp.ClientSession, url: str, service_id: str, key: str):
        self.session = session
        self.url = url.rstrip("/")
        self.service_id = service_id
        self.key = key

    async def send(
        self,
        method: str,
        resource: str,
        body: Any = None,
        *,
        user: str | None = None,
        role: str | None = None,
    ) -> Answer:
        headers = {"Authorization": mauth_header(self.service_id, self.key, user=user, role=role)}
        data = None
        if body is not None:
            data = json.dumps(body)
            headers["Content-Type"] = "application/json"
        else:
            headers["Content-Type"] = "text/plain;charset=UTF-8"
        async with self.session.request(
            method, f"{self.url}/{resource.lstrip('/')}", data=data, headers=headers
        ) as response:
            text = await response.text()
            content_type = response.headers.get("Content-Type")
            bare = content_type.split(";")[0].strip() if content_type else None
            return Answer(response.status, bare, text)
