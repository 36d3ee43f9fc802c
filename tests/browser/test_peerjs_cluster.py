"""The unmodified peerjs library in Chromium, two pages on two portals of a cluster.

The pages come from a whole server; each page's Peer connects to a PeerJS front end of
its own (a Bus node each on one real redis-server, tests/cluster/peer_portal.py), so
every signaling message between them crosses the bus.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.browser.harness import Browser, Page
from tests.browser.test_peerjs import BLUE, OPEN_PEER, RED, sees
from tests.cluster.peer_portal import PeerPortal, start_peer_portal
from tests.redisserver import RedisServer
from tests.support import RunningServer

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def portals(tessera: RunningServer, tmp_path: Path) -> AsyncIterator[list[PeerPortal]]:
    redis = RedisServer(tmp_path / "redis")
    await redis.start()
    started: list[PeerPortal] = []
    try:
        for node in ("portal-1", "portal-2"):
            started.append(
                await start_peer_portal(
                    tessera.server.conference, tessera.server.config, redis.url, node
                )
            )
        yield started
    finally:
        for portal in started:
            await portal.stop()
        await redis.stop()


async def peer_on(
    browser: Browser, tessera: RunningServer, portal: PeerPortal, peer_id: str, colour: str
) -> Page:
    page = await browser.new_page(tessera.url + "/")
    await page.add_script("/vendor/peerjs/peerjs.min.js")
    opened = await page.evaluate(
        OPEN_PEER,
        {
            "key": tessera.server.default_service.id,
            "id": peer_id,
            "colour": colour,
            "port": portal.port,
            "pingInterval": None,
        },
    )
    assert opened == peer_id
    return page


async def test_pages_on_two_portals_call_each_other_and_send_data(
    browser: Browser, tessera: RunningServer, portals: list[PeerPortal]
) -> None:
    one, two = portals
    alice = await peer_on(browser, tessera, one, "alice", "rgb({}, {}, {})".format(*RED))
    bob = await peer_on(browser, tessera, two, "bob", "rgb({}, {}, {})".format(*BLUE))
    # One id, once in the cluster: "bob" on the other portal is taken.
    taken = await peer_on_refused(browser, tessera, one, "bob")
    assert taken == "error:unavailable-id"
    await alice.evaluate(
        "(dst) => { const call = peer.call(dst, window.local); window.watch(call); }", "bob"
    )
    await sees(alice, "bob", BLUE)
    await sees(bob, "alice", RED)
    await alice.evaluate(
        """(dst) => new Promise((resolve) => {
             const conn = peer.connect(dst);
             window.conn = conn;
             conn.on("data", (data) => window.received.push(data));
             conn.on("open", () => { conn.send({text: "hi bob", n: 1}); resolve(); });
           })""",
        "bob",
    )
    await bob.wait_for("() => window.received.length > 0")
    assert await bob.evaluate("() => window.received") == [{"text": "hi bob", "n": 1}]
    await alice.wait_for("() => window.received.length > 0")
    assert await alice.evaluate("() => window.received") == [{"echo": {"text": "hi bob", "n": 1}}]
    # bob's page leaves: his Peer is destroyed, and alice's side of the call closes.
    await bob.evaluate("() => window.peer.destroy()")
    await alice.wait_for("() => window.hungUp.includes('bob')")


async def peer_on_refused(
    browser: Browser, tessera: RunningServer, portal: PeerPortal, peer_id: str
) -> str:
    page = await browser.new_page(tessera.url + "/")
    await page.add_script("/vendor/peerjs/peerjs.min.js")
    return str(
        await page.evaluate(
            OPEN_PEER,
            {
                "key": tessera.server.default_service.id,
                "id": peer_id,
                "colour": "black",
                "port": portal.port,
                "pingInterval": None,
            },
        )
    )
