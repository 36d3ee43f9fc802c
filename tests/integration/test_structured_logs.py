"""Log lines name their ids: login, publish, subscribe, a refusal; a demo token; a peer OPEN."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from tessera.portal.logs import StructuredFormatter
from tessera_client import ClientError
from tests.eventually import eventually
from tests.integration.test_peer import raw_peer
from tests.integration.test_webapp import demo
from tests.support import RunningServer, api, joined
from tests.synthetic import ColorVideoTrack


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """Every portal/conference/webrtc_agent/mixer line, formatted as logged (context included)."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(StructuredFormatter("json"))
    loggers = [
        logging.getLogger(f"tessera.{name}")
        for name in ("portal", "conference", "webrtc_agent", "mixer")
    ]
    saved = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.INFO)
    try:
        yield out
    finally:
        for lg, level in zip(loggers, saved, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)


def events(out: io.StringIO) -> list[dict[str, str]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


async def test_login_publish_subscribe_lines_carry_ids(
    tessera: RunningServer, json_lines: io.StringIO
) -> None:
    alice = await joined(tessera, "alice")
    bob = await joined(tessera, "bob", role="viewer")
    publication = await alice.publish(video=ColorVideoTrack((200, 0, 0)))
    await publication.wait_ready()
    subscription = await bob.subscribe(publication.id, audio=False)
    await subscription.wait_ready()
    with pytest.raises(ClientError, match="Permission denied"):
        await bob.publish(video=ColorVideoTrack((0, 0, 200)))
    await alice.leave()
    await bob.leave()

    lines = events(json_lines)
    room = alice.room_id

    def find(msg: str, **ids: str | None) -> dict[str, str]:
        for line in lines:
            if line["msg"].startswith(msg) and all(line.get(k) == v for k, v in ids.items()):
                return line
        raise AssertionError(f"no line {msg!r} with {ids} in {lines}")

    joined_line = find("participant joined", room=room, participant=alice.participant_id)
    assert joined_line["user"] == "alice" and joined_line["service"] == "default"
    find("publish", room=room, participant=alice.participant_id, stream=publication.id)
    find("stream added", room=room, participant=alice.participant_id, stream=publication.id)
    find("subscribe", room=room, participant=bob.participant_id, subscription=subscription.id)
    refused = find("request refused", room=room, participant=bob.participant_id)
    assert refused["request"] == "publish" and "sid" in refused
    find("stream removed", room=room, stream=publication.id)
    find("participant left", room=room, participant=bob.participant_id)
    for line in lines:
        assert set(line) >= {"time", "level", "logger", "msg"}


async def test_demo_token_and_peer_open_lines_carry_ids(
    tessera: RunningServer, json_lines: io.StringIO
) -> None:
    service = tessera.server.default_service.id
    room = tessera.server.store.find_room_by_name(service, "default")
    assert room is not None
    status, reply = await demo(tessera, "POST", "/demo/token", {"user": "ada", "room": "default"})
    assert status == 200, reply
    opened = await raw_peer(tessera, "ada-peer")
    refused = await raw_peer(tessera, "bob-peer", key="no-such-service")
    try:
        assert await opened.recv() == {"type": "OPEN"}
        assert (await refused.recv())["type"] == "INVALID-KEY"
    finally:
        await opened.close()
        await refused.close()

    lines = events(json_lines)
    token = [line for line in lines if line["msg"] == "demo token issued"]
    assert len(token) == 1, lines
    assert token[0]["service"] == service and token[0]["room"] == room.id
    assert token[0]["room_name"] == "default" and token[0]["user"] == "ada"
    assert token[0]["logger"] == "tessera.portal.webapp"
    open_lines = [line for line in lines if line["msg"] == "peer open"]
    assert [(line["service"], line["peer"]) for line in open_lines] == [(service, "ada-peer")]
    refusal = next(line for line in lines if line["msg"] == "peer refused")
    # A key that names no service is not logged as one.
    assert refusal["peer"] == "bob-peer" and refusal["key"] == "no-such-service"
    assert "service" not in refusal and refusal["reason"]


async def test_ad_hoc_and_rest_room_lines_at_info(
    tessera: RunningServer, json_lines: io.StringIO
) -> None:
    # These lines once passed `name` in extra, which logging refuses (KeyError) at INFO.
    client = await joined(tessera, "cy", room="pop-up")
    room = client.room_id
    await client.leave()
    status, reply = await api(tessera, "POST", "/v1/rooms", {"name": "made-over-rest"})
    assert status == 200, reply

    def find(msg: str) -> dict[str, str] | None:
        return next((line for line in events(json_lines) if line["msg"] == msg), None)

    # The empty room is removed after the leave is answered.
    await eventually(lambda: find("ad-hoc room removed"), what="the room removed")
    for msg in ("ad-hoc room created", "ad-hoc room removed"):
        line = find(msg)
        assert line is not None and line["room"] == room and line["room_name"] == "pop-up"
    created = find("room created over REST")
    assert created is not None
    assert created["room"] == reply["id"] and created["room_name"] == "made-over-rest"
