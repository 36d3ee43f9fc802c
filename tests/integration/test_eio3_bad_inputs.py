"""Malformed Engine.IO 3 traffic: a clean 400 or close, a log line, nothing stuck.

A raw HTTP and WebSocket client speaks protocol 3 by hand, wrongly on purpose.
Each case checks the answer, the log line naming the problem, that the session
and its portal connection are gone (or, where the protocol says so, untouched),
that no traceback was logged, and that a well-behaved client still gets in.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tessera.portal.eio3gateway import EIO3_GATEWAY
from tessera.portal.engineio3 import Packet, PacketType, decode_payload, encode_payload
from tests.eventually import eventually
from tests.support import RunningServer, start_server

LOGIN_USER_AGENT = {"sdk": {"type": "JavaScript", "version": "5.1"}}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture(autouse=True)
def no_tracebacks(caplog: pytest.LogCaptureFixture) -> Any:
    caplog.set_level(logging.INFO)
    yield
    tracebacks = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert tracebacks == [], [r.getMessage() for r in tracebacks]


def url(tessera: RunningServer, **query: str) -> str:
    return tessera.url + "/socket.io/?" + "&".join(f"{k}={v}" for k, v in query.items())


def message(text: str) -> str:
    """A payload of one message packet carrying the Socket.IO packet ``text``."""
    return encode_payload([Packet(PacketType.MESSAGE, text)])


def logged(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return any(text in record.getMessage() for record in caplog.records)


async def handshake(http: aiohttp.ClientSession, tessera: RunningServer) -> str:
    """Open a polling session; its id. The first response holds the open packet and `40`."""
    async with http.get(url(tessera, EIO="3", transport="polling")) as response:
        assert response.status == 200
        packets = decode_payload(await response.text())
    assert packets[0].type == PacketType.OPEN and packets[1:] == [Packet(PacketType.MESSAGE, "0")]
    opened = json.loads(str(packets[0].data))
    assert set(opened) == {"sid", "upgrades", "pingInterval", "pingTimeout"}
    return str(opened["sid"])


async def post(
    http: aiohttp.ClientSession, tessera: RunningServer, sid: str, body: Any, **headers: str
) -> tuple[int, str]:
    # As socket.io-client 2.x posts text payloads.
    headers = {"Content-Type": "text/plain;charset=UTF-8", **headers}
    target = url(tessera, EIO="3", transport="polling", sid=sid)
    async with http.post(target, data=body, headers=headers) as response:
        return response.status, await response.text()


async def get(http: aiohttp.ClientSession, tessera: RunningServer, sid: str) -> tuple[int, str]:
    async with http.get(url(tessera, EIO="3", transport="polling", sid=sid)) as response:
        return response.status, await response.text()


async def gone(tessera: RunningServer, sid: str) -> None:
    gateway = tessera.app[EIO3_GATEWAY]
    await eventually(
        lambda: (
            sid not in gateway.sessions
            and sid not in tessera.server.sio.eio.sockets
            and sid not in tessera.server.sio.environ  # python-socketio forgot it too
            and not tessera.server.portal.connections
        ),
        what=f"session {sid} and its portal connection closed",
    )


async def a_good_client_gets_in(http: aiohttp.ClientSession, tessera: RunningServer) -> None:
    sid = await handshake(http, tessera)
    login = {"token": tessera.token(user="good"), "userAgent": LOGIN_USER_AGENT, "protocol": "1.2"}
    event = "20" + json.dumps(["login", login])  # EVENT, ack id 0
    assert await post(http, tessera, sid, encode_payload([Packet(PacketType.MESSAGE, event)])) == (
        200,
        "ok",
    )
    status, text = await get(http, tessera, sid)
    assert status == 200
    (reply,) = decode_payload(text)
    assert str(reply.data).startswith('30["ok",{')
    assert await post(http, tessera, sid, "1:1") == (200, "ok")  # close
    await gone(tessera, sid)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("9:4hello", "longer than the payload"),
        ("x:4hello", "invalid packet length"),
        ("4hello", "without its colon"),
        ("", "empty payload"),
        ("2:4😀", "splits a character"),
        ("1:9", "unknown packet type"),
        ("1:0", "does not send OPEN"),
        ("1:3", "does not send PONG"),
        ("1:5", "does not send UPGRADE"),
        (message("7"), "unknown Socket.IO packet type"),
        (message('2["x'), "not JSON"),
        (message("2{"), "not JSON"),
        (message('4""'), "does not send ERROR"),
        (message('51-["x",{"_placeholder":true,"num":0}]'), "binary"),
        ("10:b4AAECAw==", "binary messages are not supported"),
        (b"2:4\xff", "not UTF-8"),
    ],
)
async def test_malformed_payloads_close_the_session(
    http: aiohttp.ClientSession,
    tessera: RunningServer,
    caplog: pytest.LogCaptureFixture,
    body: str | bytes,
    problem: str,
) -> None:
    sid = await handshake(http, tessera)
    status, text = await post(http, tessera, sid, body)
    assert status == 400 and problem in json.loads(text)
    assert logged(caplog, problem)
    await gone(tessera, sid)
    assert (await get(http, tessera, sid))[0] == 400  # the session is over
    await a_good_client_gets_in(http, tessera)


async def test_binary_and_oversized_payloads_are_refused(
    http: aiohttp.ClientSession, tessera: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    sid = await handshake(http, tessera)
    status, _ = await post(
        http, tessera, sid, b"\x00\x01\xff0", **{"Content-Type": "application/octet-stream"}
    )
    assert status == 400 and logged(caplog, "binary payloads are not supported")
    await gone(tessera, sid)

    limit = tessera.server.sio.eio.max_http_buffer_size
    sid = await handshake(http, tessera)
    message = "42" + json.dumps(["text", {"to": "all", "message": "x" * limit}])
    status, _ = await post(
        http, tessera, sid, encode_payload([Packet(PacketType.MESSAGE, message)])
    )
    assert status == 400 and logged(caplog, f"payload larger than {limit} bytes")
    await gone(tessera, sid)

    # The same without a Content-Length (chunked): counted as it is read.
    sid = await handshake(http, tessera)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(limit // 65536 + 2):
            yield b"x" * 65536

    status, _ = await post(http, tessera, sid, chunks())
    assert status == 400
    await gone(tessera, sid)
    await a_good_client_gets_in(http, tessera)


async def test_unknown_sessions_transports_and_jsonp_are_refused(
    http: aiohttp.ClientSession, tessera: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    assert (await get(http, tessera, "nosuchsession"))[0] == 400
    assert (await post(http, tessera, "nosuchsession", "1:2"))[0] == 400
    assert logged(caplog, "Engine.IO 3 request refused: Invalid session")
    async with http.get(url(tessera, EIO="3", transport="flashsocket")) as response:
        assert response.status == 400
    assert logged(caplog, "Invalid transport")
    async with http.get(url(tessera, EIO="3", transport="polling", j="0")) as response:
        assert response.status == 400
    assert logged(caplog, "JSONP polling is not supported")
    async with http.post(url(tessera, EIO="3", transport="polling"), data="1:2") as response:
        assert response.status == 400
    assert logged(caplog, "A session starts with a GET")
    # A WebSocket request that is no upgrade.
    async with http.get(url(tessera, EIO="3", transport="websocket")) as response:
        assert response.status == 400
    assert logged(caplog, "Invalid websocket upgrade")
    # Engine.IO 2 and 5 remain python-engineio's to refuse.
    async with http.get(url(tessera, EIO="2", transport="polling")) as response:
        assert response.status == 400
    assert tessera.app[EIO3_GATEWAY].sessions == {}
    await a_good_client_gets_in(http, tessera)


async def test_overlapping_gets_close_the_session(
    http: aiohttp.ClientSession, tessera: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    sid = await handshake(http, tessera)
    session = tessera.app[EIO3_GATEWAY].sessions[sid]
    waiting = asyncio.ensure_future(get(http, tessera, sid))
    await eventually(lambda: session._polling_get, what="the first GET waiting")
    assert (await get(http, tessera, sid))[0] == 400
    assert logged(caplog, "a second GET while one is waiting")
    # The first GET is answered: the session is closed.
    status, text = await waiting
    assert status == 200 and decode_payload(text)[-1] == Packet(PacketType.CLOSE)
    await gone(tessera, sid)


async def test_cors_headers_for_a_page_of_another_origin(
    http: aiohttp.ClientSession, tessera: RunningServer
) -> None:
    origin = {"Origin": "https://app.example"}
    async with http.get(url(tessera, EIO="3", transport="polling"), headers=origin) as response:
        assert response.status == 200
        assert response.headers["Access-Control-Allow-Origin"] == "https://app.example"
        assert response.headers["Access-Control-Allow-Credentials"] == "true"
        sid = json.loads(str(decode_payload(await response.text())[0].data))["sid"]
    preflight = {**origin, "Access-Control-Request-Headers": "content-type"}
    async with http.options(
        url(tessera, EIO="3", transport="polling", sid=sid), headers=preflight
    ) as response:
        assert response.status == 200
        assert response.headers["Access-Control-Allow-Methods"] == "OPTIONS, GET, POST"
        assert response.headers["Access-Control-Allow-Headers"] == "content-type"
    assert await post(http, tessera, sid, "1:1") == (200, "ok")
    await gone(tessera, sid)


async def test_a_client_that_stops_pinging_is_closed(
    http: aiohttp.ClientSession, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tessera = await start_server(
        tmp_path, **{"portal.ping_interval": 0.3, "portal.ping_timeout": 0.3}
    )
    try:
        for transport in ("polling", "websocket"):
            if transport == "polling":
                sid = await handshake(http, tessera)
                assert await post(http, tessera, sid, "1:2") == (
                    200,
                    "ok",
                )  # one ping, then silence
                assert decode_payload((await get(http, tessera, sid))[1]) == [
                    Packet(PacketType.PONG)
                ]
                waiting = asyncio.ensure_future(get(http, tessera, sid))
                await gone(tessera, sid)
                # The GET that was waiting is answered with a close packet.
                assert decode_payload((await waiting)[1]) == [Packet(PacketType.CLOSE)]
            else:
                async with http.ws_connect(url(tessera, EIO="3", transport="websocket")) as ws:
                    opened = json.loads((await ws.receive_str())[1:])
                    assert opened["upgrades"] == [] and opened["pingInterval"] == 300
                    assert await ws.receive_str() == "40"
                    await gone(tessera, opened["sid"])
                    assert (await ws.receive()).type in (
                        aiohttp.WSMsgType.CLOSE,
                        aiohttp.WSMsgType.CLOSED,
                    )
        assert logged(caplog, "(ping timeout)")
    finally:
        await tessera.stop()


@pytest.mark.parametrize(
    ("frame", "code", "problem"),
    [
        (b"\x04binary", 1003, "binary frames are not supported"),
        ("b4AAEC", 1003, "binary messages are not supported"),
        ('451-["x",{"_placeholder":true,"num":0}]', 1003, "binary Socket.IO packets"),
        ("x", 1002, "unknown packet type"),
        ("", 1002, "empty packet"),
        ("4", 1002, "unknown Socket.IO packet type"),
        ('42["x",', 1002, "not JSON"),
        ("5", 1002, "does not send UPGRADE"),
    ],
)
async def test_malformed_websocket_frames_close_the_session(
    http: aiohttp.ClientSession,
    tessera: RunningServer,
    caplog: pytest.LogCaptureFixture,
    frame: str | bytes,
    code: int,
    problem: str,
) -> None:
    async with http.ws_connect(url(tessera, EIO="3", transport="websocket")) as ws:
        sid = json.loads((await ws.receive_str())[1:])["sid"]
        assert await ws.receive_str() == "40"
        await (ws.send_bytes(frame) if isinstance(frame, bytes) else ws.send_str(frame))
        message = await ws.receive()
        assert message.type == aiohttp.WSMsgType.CLOSE and message.data == code
    assert logged(caplog, problem)
    await gone(tessera, sid)
    await a_good_client_gets_in(http, tessera)


async def test_an_oversized_websocket_frame_closes_the_session(
    http: aiohttp.ClientSession, tessera: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    limit = tessera.server.sio.eio.max_http_buffer_size
    async with http.ws_connect(url(tessera, EIO="3", transport="websocket")) as ws:
        sid = json.loads((await ws.receive_str())[1:])["sid"]
        assert await ws.receive_str() == "40"
        await ws.send_str("42" + json.dumps(["text", {"message": "x" * limit}]))
        message = await ws.receive()
        assert message.type == aiohttp.WSMsgType.CLOSE and message.data == 1009
    assert logged(caplog, "Engine.IO 3 WebSocket closed")
    await gone(tessera, sid)


async def test_upgrades_done_wrong(
    http: aiohttp.ClientSession, tessera: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    sid = await handshake(http, tessera)
    ws_url = url(tessera, EIO="3", transport="websocket", sid=sid)
    # No probe: the WebSocket is closed, the session goes on polling.
    async with http.ws_connect(ws_url) as ws:
        await ws.send_str("4hello")
        assert (await ws.receive()).type == aiohttp.WSMsgType.CLOSE
    assert logged(caplog, "upgrade abandoned: no probe")
    assert await post(http, tessera, sid, "1:2") == (200, "ok")
    assert decode_payload((await get(http, tessera, sid))[1]) == [Packet(PacketType.PONG)]
    # A probe, then no upgrade packet: the same.
    async with http.ws_connect(ws_url) as ws:
        await ws.send_str("2probe")
        assert await ws.receive_str() == "3probe"
        await ws.send_str("2")
        assert (await ws.receive()).type == aiohttp.WSMsgType.CLOSE
    assert logged(caplog, "upgrade abandoned: no upgrade packet")
    status, text = await get(http, tessera, sid)  # the probe's noop was left for it
    assert status == 200 and decode_payload(text) == [Packet(PacketType.NOOP)]
    # Done right, then again: the second upgrade and any polling are refused.
    async with http.ws_connect(ws_url) as ws:
        await ws.send_str("2probe")
        assert await ws.receive_str() == "3probe"
        await ws.send_str("5")
        await ws.send_str("2")
        # The probe's noop (no GET was waiting for it), then the pong.
        assert [await ws.receive_str(), await ws.receive_str()] == ["6", "3"]
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await http.ws_connect(ws_url)
        assert logged(caplog, "Unexpected upgrade")
        assert (await get(http, tessera, sid))[0] == 400
        assert (await post(http, tessera, sid, "1:2"))[0] == 400
        assert logged(caplog, "Unexpected HTTP request")
        await ws.send_str("2")  # the session is untouched
        assert await ws.receive_str() == "3"
    await gone(tessera, sid)
