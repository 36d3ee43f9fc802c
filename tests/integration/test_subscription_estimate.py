"""A subscriber's adaptive estimate outside querybwe: in the REST participant detail
(``subscriptions[].adaptive``), and as the figures of the ``connection-quality`` request
the conference page polls for everyone's indicator, with the loss of what a publisher
sends (real aiortc clients, one behind a lossy relay)."""

from __future__ import annotations

from typing import Any

import pytest

from tessera_client import ClientError, ConferenceClient
from tests.eventually import eventually
from tests.integration.test_adaptive import ladder_room, limited, mixed, published
from tests.shapingrelay import resume_at_keyframes
from tests.support import RunningServer, api


async def participant(tessera: RunningServer, room: str, client: ConferenceClient) -> Any:
    status, detail = await api(
        tessera, "GET", f"/v1/rooms/{room}/participants/{client.participant_id}"
    )
    assert status == 200, detail
    return detail


async def test_rest_and_connection_quality_show_a_lossy_subscribers_estimate(
    tessera: RunningServer,
) -> None:
    room = await ladder_room(tessera)
    async with (
        published(tessera, room) as publisher,
        limited(tessera, room, "weak") as (
            client,
            relay,
        ),
    ):
        relay.shape(None, loss=0.2)  # a fifth of what the server sends never arrives
        subscription = await client.subscribe(mixed(client), audio=False)
        resume_at_keyframes(subscription)
        await subscription.wait_ready()

        async def lossy_in_rest() -> dict[str, Any]:
            listed = (await participant(tessera, room, client))["subscriptions"]
            assert [s["id"] for s in listed] == [subscription.id], listed
            adaptive: dict[str, Any] = listed[0]["adaptive"]
            assert adaptive["reports"] > 0 and adaptive["fractionLost"] >= 0.1, adaptive
            assert adaptive["estimatedBitrate"] is not None, adaptive  # querybwe answers
            return listed[0]

        shown = await eventually(lossy_in_rest, 30, "the subscriber's loss in its detail")
        video = shown["media"]["video"]
        assert shown["media"]["audio"] is False
        assert (video["from"], video["status"], video["format"]) == (
            mixed(client),
            "active",
            {"codec": "vp8"},
        )
        # The same object querybwe answers under `adaptive`.
        reply = await client.request(
            "subscription-control", {"id": subscription.id, "operation": "querybwe"}
        )
        assert set(reply["adaptive"]) == set(shown["adaptive"])
        assert shown["adaptive"]["rungs"] == 4

        # The OWT fields are unchanged; the publisher subscribes to nothing.
        mine = await participant(tessera, room, publisher)
        assert set(mine) == {"id", "user", "role", "permission", "subscriptions"}
        assert mine["subscriptions"] == []
        status, listed = await api(tessera, "GET", f"/v1/rooms/{room}/participants")
        assert (
            status == 200 and {p["id"]: p for p in listed}[client.participant_id]["subscriptions"]
        )

        # What the page polls: everyone's figures, the lossy subscriber's from its estimate,
        # the publisher's from what arrives of its publication (a clean link: no loss).
        async def figures() -> dict[str, Any]:
            reply = await publisher.request("connection-quality")
            by_id = {p["id"]: p for p in reply["participants"]}
            assert set(by_id) == {client.participant_id, publisher.participant_id}
            assert by_id[client.participant_id]["loss"] >= 0.1, by_id
            assert by_id[publisher.participant_id]["loss"] is not None, by_id
            return by_id

        by_id = await eventually(figures, 30, "both participants' figures", interval=0.5)
        sent = by_id[publisher.participant_id]
        assert sent["loss"] < 0.02 and sent["rtt"] is None and sent["limited"] is False, sent
        with pytest.raises(ClientError, match="takes no data"):
            await publisher.request("connection-quality", {"everyone": True})
        # Gone from the detail once unsubscribed.
        await subscription.unsubscribe()
        assert (await participant(tessera, room, client))["subscriptions"] == []
