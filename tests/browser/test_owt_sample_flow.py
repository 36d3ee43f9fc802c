"""OWT's sample flow in Chromium: an app server asks Tessera's REST API for a token and
relays the answer's body as it is (samplertcservice.js); the page fetches it as text and
joins with it (rest-sample.js + ConferenceClient.join)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from tests.browser.harness import Browser
from tests.owt_rest import OwtRest
from tests.support import RunningServer, api

# The page: POST {room, user, role} to the app server (rest-sample.js's createToken),
# read the answer as text, join with it, publish a canvas.
JOIN_WITH_APP_SERVER_TOKEN = """async ({appServer, room, user}) => {
  const { ConferenceClient } = await import("/static/js/tessera.js");
  const response = await fetch(appServer + "/tokens/", {
    method: "POST",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({room, user, role: "presenter"}),
  });
  const token = await response.text();
  const client = new ConferenceClient();
  window.client = client;
  const info = await client.join(token);
  const canvas = document.createElement("canvas");
  canvas.width = 320;
  canvas.height = 180;
  const context = canvas.getContext("2d");
  context.fillStyle = "rgb(0, 150, 60)";
  setInterval(() => context.fillRect(0, 0, 320, 180), 40);
  const publication = await client.publish(canvas.captureStream(25), {attributes: {name: user}});
  await publication.ready;
  return {status: response.status, room: info.room.id, participant: client.id,
          stream: publication.id, tokenLength: token.length};
}"""


class SampleAppServer:
    """The part of OWT's samplertcservice.js that issues tokens, on 127.0.0.1."""

    def __init__(self, rest: OwtRest) -> None:
        self.rest = rest
        self.app = web.Application()
        self.app.router.add_route("OPTIONS", "/tokens/", self.preflight)
        self.app.router.add_post("/tokens/", self.create_token)
        self.runner = web.AppRunner(self.app)
        self.url = ""

    @staticmethod
    def cors(response: web.StreamResponse) -> web.StreamResponse:
        response.headers["Access-Control-Allow-Origin"] = "*"
        response.headers["Access-Control-Allow-Methods"] = "POST, GET, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = "origin, content-type"
        return response

    async def preflight(self, request: web.Request) -> web.StreamResponse:
        return self.cors(web.Response(status=200))

    async def create_token(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        answer = await self.rest.send(
            "POST",
            f"v1/rooms/{body['room']}/tokens",
            {
                "user": body["user"],
                "role": body["role"],
                "preference": {"isp": "isp", "region": "region"},
            },
        )
        # res.send(token): the REST answer's body, untouched.
        return self.cors(web.Response(status=answer.status, text=answer.text))

    async def start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        assert site._server is not None
        port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"


@pytest.fixture
async def app_server(tessera: RunningServer) -> AsyncIterator[SampleAppServer]:
    service = tessera.server.default_service
    async with aiohttp.ClientSession() as session:
        server = SampleAppServer(OwtRest(session, tessera.url, service.id, service.key))
        await server.start()
        try:
            yield server
        finally:
            await server.runner.cleanup()


async def test_page_joins_with_the_token_an_app_server_relays(
    browser: Browser, tessera: RunningServer, app_server: SampleAppServer
) -> None:
    # The sample app server names its room ("sampleRoom") as OWT's sample does.
    status, room = await api(tessera, "POST", "/v1/rooms", {"name": "sampleRoom"})
    assert status == 200, room
    page = await browser.new_page(tessera.url + "/")
    reply = await page.evaluate(
        JOIN_WITH_APP_SERVER_TOKEN,
        {"appServer": app_server.url, "room": "sampleRoom", "user": "Ada"},
    )
    assert reply["status"] == 200 and reply["room"] == room["_id"]
    status, people = await api(tessera, "GET", f"/v1/rooms/{room['_id']}/participants")
    assert status == 200 and [(p["id"], p["user"]) for p in people] == [
        (reply["participant"], "Ada")
    ]
    status, streams = await api(tessera, "GET", f"/v1.1/rooms/{room['_id']}/streams")
    forward = next(s for s in streams if s["id"] == reply["stream"])
    assert forward["info"]["owner"] == reply["participant"]
    assert forward["media"]["video"]["status"] == "active"
    await page.evaluate("() => window.client.leave()")
