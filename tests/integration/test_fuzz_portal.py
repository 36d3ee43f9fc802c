"""Random and malformed Client-Portal requests: every reply is well formed, nothing breaks."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tessera_client import ConferenceClient
from tests.integration.test_bad_inputs import RawClient
from tests.support import RunningServer, start_server
from tests.synthetic import ColorVideoTrack

REQUESTS = [
    "login",
    "relogin",
    "logout",
    "refreshReconnectionTicket",
    "publish",
    "unpublish",
    "subscribe",
    "unsubscribe",
    "soac",
    "stream-control",
    "subscription-control",
    "text",
    "connection-quality",
    "no-such-thing",
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "id",
                    "media",
                    "tracks",
                    "type",
                    "mid",
                    "from",
                    "signaling",
                    "sdp",
                    "candidate",
                    "operation",
                    "data",
                    "to",
                    "message",
                    "token",
                    "transport",
                    "parameters",
                    "x",
                ]
            ),
            children,
            max_size=5,
        )
    ),
    max_leaves=12,
)


class ErrorLogCounter(logging.Handler):
    """Counts tracebacks the portal logs (an unhandled exception in a handler)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.count += 1


async def test_random_requests_get_well_formed_replies(tmp_path: Path) -> None:
    # Without rate limits: every fuzzed request must reach its handler.
    tessera = await start_server(
        tmp_path,
        **{"limits.requests_per_second": 100_000.0, "limits.request_burst": 100_000},
    )
    try:
        await fuzz(tessera)
    finally:
        await tessera.stop()


async def fuzz(tessera: RunningServer) -> None:
    loop = asyncio.get_running_loop()
    errors = ErrorLogCounter()
    logging.getLogger("tessera").addHandler(errors)
    client = RawClient()
    await client.connect(tessera.url)
    status, _ = await client.login(tessera.token(user="fuzzer"))
    assert status == "ok"
    replies: list[tuple[Any, ...]] = []

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(name=st.sampled_from(REQUESTS), payload=json_values)
    def one(name: str, payload: Any) -> None:
        if name in ("logout", "login", "relogin"):
            name = "text"  # keep the session: login paths are fuzzed below
        future = asyncio.run_coroutine_threadsafe(client.request(name, payload), loop)
        replies.append(future.result(10))

    # Hypothesis drives synchronously: run it in a thread while the loop serves.
    await asyncio.to_thread(one)
    assert len(replies) >= 100, len(replies)
    for reply in replies:
        assert len(reply) == 2 and reply[0] in ("ok", "error"), reply
        if reply[0] == "error":
            assert isinstance(reply[1], str) and reply[1]
            assert "Too many requests" not in reply[1]

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(name=st.sampled_from(["login", "relogin"]), payload=json_values)
    def logins(name: str, payload: Any) -> None:
        probe = RawClient()
        asyncio.run_coroutine_threadsafe(probe.connect(tessera.url), loop).result(10)
        reply = asyncio.run_coroutine_threadsafe(probe.request(name, payload), loop).result(10)
        assert reply[0] == "error" and isinstance(reply[1], str)
        asyncio.run_coroutine_threadsafe(probe.sio.disconnect(), loop).result(10)

    await asyncio.to_thread(logins)
    logging.getLogger("tessera").removeHandler(errors)
    assert errors.count == 0, "a request raised an unhandled exception"
    # The server still serves a valid client.
    ok = ConferenceClient()
    await ok.join(tessera.token(user="after"))
    publication = await ok.publish(video=ColorVideoTrack((10, 120, 10)))
    await publication.wait_ready()
    await ok.leave()
    await client.sio.disconnect()
