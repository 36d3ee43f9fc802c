"""A small portal that speaks PROTOCOL.md well enough to drive the client end to end.

It is a fake that behaves: a real python-socketio server on loopback, a real aiortc
peer connection per participant that answers the client's offers, sends synthetic
media on subscribed m-lines and receives published tracks. It records every
request it received so tests can check what went over the wire. It is not
Tessera's portal and shares no code with it.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import socketio
from aiohttp import web
from aiortc import (
    AudioStreamTrack,
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
    VideoStreamTrack,
)
from client_eventually import eventually

from tessera_client.tokens import decode_b64_json, encode_b64_json

Reply = tuple[str, Any] | tuple[str]


@dataclass
class Participant:
    id: str
    user: str
    role: str
    sid: str | None
    pc: RTCPeerConnection | None = None
    transport_id: str | None = None
    queued: list[dict[str, Any]] = field(default_factory=list)
    # mid -> kind for the m-lines of subscriptions, which the portal sends on
    subscribe_mids: dict[str, str] = field(default_factory=dict)
    # session id -> mids, announced "ready" once the transport is connected
    unannounced: dict[str, list[str]] = field(default_factory=dict)
    received_tracks: list[MediaStreamTrack] = field(default_factory=list)
    sent_tracks: list[MediaStreamTrack] = field(default_factory=list)
    offers: list[str] = field(default_factory=list)


class FakePortal:
    """A loopback portal; ``requests`` lists ``(participant id, event, data)`` received."""

    def __init__(self, *, ticket_lifetime: float = 60.0) -> None:
        self.sio = socketio.AsyncServer(async_mode="aiohttp", cors_allowed_origins="*")
        self.app = web.Application()
        self.sio.attach(self.app)
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.room_id = "room1"
        self.ticket_lifetime = ticket_lifetime
        self.participants: dict[str, Participant] = {}
        self.by_sid: dict[str, str] = {}
        self.streams: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str | None, str, Any]] = []
        self.origins: list[str | None] = []
        self.refused_relogin = False
        self.answer_before_ack = True
        # requests that never get an ack ("slow" always)
        self.silent_events: set[str] = {"slow"}
        self.seq = itertools.count(1)
        self.ids = itertools.count(1)
        self.tasks: set[asyncio.Task[Any]] = set()
        self._register()

    # -------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        self.runner = web.AppRunner(self.app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def stop(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        for participant in self.participants.values():
            if participant.pc is not None:
                await participant.pc.close()
        if self.runner is not None:
            await self.runner.cleanup()

    def token(self, user: str, role: str = "presenter") -> str:
        return encode_b64_json(
            {
                "tokenId": f"tok-{user}",
                "host": f"127.0.0.1:{self.port}",
                "secure": False,
                "signature": f"fake.{user}.{role}",
            }
        )

    def requests_named(self, event: str) -> list[Any]:
        return [data for _, event_name, data in self.requests if event_name == event]

    # ----------------------------------------------------------- notifications

    async def notify(self, participant: Participant, event: str, data: Any = None) -> None:
        if participant.sid is None:
            participant.queued.append({"event": event, "data": data, "seq": next(self.seq)})
        else:
            await self.sio.emit(event, data, to=participant.sid)

    async def broadcast(self, event: str, data: Any, exclude: str | None = None) -> None:
        for participant in list(self.participants.values()):
            if participant.id != exclude:
                await self.notify(participant, event, data)

    async def drop(self, participant_id: str) -> None:
        participant = self.participants[participant_id]
        sid = participant.sid
        await self.notify(participant, "drop")
        await self._remove(participant)
        if sid is not None:
            await self.sio.disconnect(sid)

    async def _remove(self, participant: Participant) -> None:
        self.participants.pop(participant.id, None)
        if participant.pc is not None:
            await participant.pc.close()
        await self.broadcast("participant", {"action": "leave", "data": participant.id})

    def ticket(self, participant_id: str) -> str:
        now = time.time() * 1000
        return encode_b64_json(
            {
                "participantId": participant_id,
                "ticketId": str(next(self.ids)),
                "notBefore": now,
                "notAfter": now + self.ticket_lifetime * 1000,
                "signature": "fake",
            }
        )

    # -------------------------------------------------------------- handlers

    def _register(self) -> None:
        sio = self.sio

        async def connect(sid: str, environ: dict[str, Any]) -> None:
            self.origins.append(environ.get("HTTP_ORIGIN"))

        async def disconnect(sid: str, reason: Any = None) -> None:
            participant_id = self.by_sid.pop(sid, None)
            participant = self.participants.get(participant_id or "")
            if participant is not None and participant.sid == sid:
                participant.sid = None  # away: keep it for relogin, queue notifications

        sio.on("connect", connect)
        sio.on("disconnect", disconnect)

        for name in (
            "login",
            "relogin",
            "refreshReconnectionTicket",
            "logout",
            "publish",
            "subscribe",
            "soac",
            "unpublish",
            "unsubscribe",
            "stream-control",
            "subscription-control",
            "text",
            "slow",
        ):
            sio.on(name, self._handler(name))

    def _handler(self, name: str) -> Any:
        async def handle(sid: str, data: Any = None) -> Reply | None:
            participant_id = self.by_sid.get(sid)
            self.requests.append((participant_id, name, data))
            if name in self.silent_events:
                await asyncio.sleep(30)  # the stimulus: a portal that never answers
                return None
            participant = self.participants.get(participant_id or "")
            if name == "login":
                return await self._login(sid, data)
            if name == "relogin":
                return await self._relogin(sid, data)
            if participant is None:
                return ("error", "Not logged in")
            method = getattr(self, "_on_" + name.replace("-", "_"))
            reply: Reply = await method(participant, data)
            return reply

        return handle

    async def _login(self, sid: str, data: Any) -> Reply:
        token = decode_b64_json(data["token"])
        user = token["signature"].split(".")[1]
        role = token["signature"].split(".")[2]
        participant = Participant(id=f"p{next(self.ids)}-{user}", user=user, role=role, sid=sid)
        others = list(self.participants.values())
        self.participants[participant.id] = participant
        self.by_sid[sid] = participant.id
        for other in others:
            await self.notify(
                other,
                "participant",
                {"action": "join", "data": {"id": participant.id, "user": user, "role": role}},
            )
        return (
            "ok",
            {
                "id": participant.id,
                "user": user,
                "role": role,
                "permission": {
                    "publish": {"audio": True, "video": True},
                    "subscribe": {"audio": True, "video": True},
                },
                "room": {
                    "id": self.room_id,
                    "views": ["common"],
                    "participants": [
                        {"id": p.id, "user": p.user, "role": p.role}
                        for p in self.participants.values()
                    ],
                    "streams": list(self.streams.values()),
                },
                "reconnectionTicket": self.ticket(participant.id),
            },
        )

    async def _relogin(self, sid: str, ticket: Any) -> Reply:
        if self.refused_relogin:
            return ("error", "Ticket is expired")
        info = decode_b64_json(ticket)
        participant = self.participants.get(info["participantId"])
        if participant is None:
            return ("error", "Client does NOT exist")
        participant.sid = sid
        self.by_sid[sid] = participant.id
        messages, participant.queued = participant.queued, []
        return ("ok", {"ticket": self.ticket(participant.id), "messages": messages})

    async def _on_refreshReconnectionTicket(self, participant: Participant, _: Any) -> Reply:
        return ("ok", self.ticket(participant.id))

    async def _on_logout(self, participant: Participant, _: Any) -> Reply:
        if participant.sid is not None:
            self.by_sid.pop(participant.sid, None)
        await self._remove(participant)
        return ("ok",)

    async def _on_publish(self, participant: Participant, data: Any) -> Reply:
        stream_id = f"stream{next(self.ids)}"
        transport_id = self._transport(participant, data, stream_id)
        if transport_id is None:
            return ("error", "Transport does NOT exist")
        participant.unannounced[stream_id] = [t["mid"] for t in data["media"]["tracks"]]
        self.streams[stream_id] = {
            "id": stream_id,
            "type": "forward",
            "data": False,
            "media": {
                "tracks": [
                    {
                        "id": f"{stream_id}-{t['mid']}",
                        "type": t["type"],
                        "source": t["source"],
                        "mid": t["mid"],
                        "format": {"codec": "opus" if t["type"] == "audio" else "vp8"},
                        "status": "active",
                    }
                    for t in data["media"]["tracks"]
                ]
            },
            "info": {
                "owner": participant.id,
                "type": "webrtc",
                "inViews": [],
                "attributes": data.get("attributes", {}),
            },
        }
        return ("ok", {"id": stream_id, "transportId": transport_id})

    async def _on_subscribe(self, participant: Participant, data: Any) -> Reply:
        for track in data["media"]["tracks"]:
            if track["from"] not in self.streams:
                return ("error", "Stream does NOT exist")
            parameters = track.get("parameters") or {}
            if parameters.get("resolution", {}).get("width", 0) > 4000:
                return ("error", "Resolution is not acceptable")
        subscription_id = f"sub{next(self.ids)}"
        transport_id = self._transport(participant, data, subscription_id)
        if transport_id is None:
            return ("error", "Transport does NOT exist")
        for track in data["media"]["tracks"]:
            participant.subscribe_mids[track["mid"]] = track["type"]
        participant.unannounced[subscription_id] = [t["mid"] for t in data["media"]["tracks"]]
        return ("ok", {"id": subscription_id, "transportId": transport_id})

    def _transport(self, participant: Participant, data: Any, session_id: str) -> str | None:
        transport = data.get("transport") or {}
        if transport.get("id") is None:
            if participant.transport_id is None:
                participant.transport_id = session_id
            return participant.transport_id
        if transport["id"] != participant.transport_id:
            return None
        return participant.transport_id

    async def _on_soac(self, participant: Participant, data: Any) -> Reply:
        if data.get("id") != participant.transport_id:
            return ("error", "Transport does NOT exist")
        signaling = data["signaling"]
        if signaling["type"] == "candidate":
            return ("ok",)
        participant.offers.append(signaling["sdp"])
        answer = await self._answer(participant, signaling["sdp"])
        push = {
            "id": participant.transport_id,
            "status": "soac",
            "data": {"type": "answer", "sdp": answer},
        }
        if self.answer_before_ack:
            await self.notify(participant, "progress", push)
        else:
            self._spawn(self._later(participant, "progress", push))
        self._spawn(self._announce_ready(participant))
        return ("ok",)

    async def _answer(self, participant: Participant, offer: str) -> str:
        if participant.pc is None:
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            participant.pc = pc
            pc.on("track", participant.received_tracks.append)
        pc = participant.pc
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        for transceiver in pc.getTransceivers():
            kind = participant.subscribe_mids.get(transceiver.mid or "")
            if kind is not None and transceiver.sender.track is None:
                track: MediaStreamTrack = (
                    AudioStreamTrack() if kind == "audio" else VideoStreamTrack()
                )
                participant.sent_tracks.append(track)
                transceiver.sender.replaceTrack(track)
                transceiver.direction = "sendonly"
        await pc.setLocalDescription(await pc.createAnswer())
        assert pc.localDescription is not None
        return pc.localDescription.sdp

    async def _announce_ready(self, participant: Participant) -> None:
        pc = participant.pc
        assert pc is not None
        try:
            await eventually(lambda: pc.connectionState == "connected", what="connected")
        except AssertionError:
            return  # never connected: no ready, as a real portal would not say it either
        await self.notify(
            participant, "progress", {"id": participant.transport_id, "status": "ready"}
        )
        for session_id in list(participant.unannounced):
            participant.unannounced.pop(session_id)
            await self.notify(
                participant,
                "progress",
                {"id": participant.transport_id, "sessionId": session_id, "status": "ready"},
            )
            if session_id in self.streams:
                await self.broadcast(
                    "stream", {"id": session_id, "status": "add", "data": self.streams[session_id]}
                )

    async def _on_unpublish(self, participant: Participant, data: Any) -> Reply:
        if data["id"] not in self.streams:
            return ("error", "Stream does NOT exist")
        del self.streams[data["id"]]
        await self.broadcast("stream", {"id": data["id"], "status": "remove"})
        return ("ok",)

    async def _on_unsubscribe(self, participant: Participant, data: Any) -> Reply:
        return ("ok",)

    async def _on_stream_control(self, participant: Participant, data: Any) -> Reply:
        stream = self.streams.get(data["id"])
        if stream is None:
            return ("error", "Stream does NOT exist")
        if data["operation"] in ("pause", "play"):
            status = "inactive" if data["operation"] == "pause" else "active"
            kinds = ["audio", "video"] if data["data"] == "av" else [data["data"]]
            for kind in kinds:
                await self.broadcast(
                    "stream",
                    {
                        "id": data["id"],
                        "status": "update",
                        "data": {"field": f"{kind}.status", "value": status},
                    },
                )
            return ("ok",)
        if data["operation"] == "get-region":
            return ("ok", {"region": "1"})
        return ("error", f"Unknown operation: {data['operation']}")

    async def _on_subscription_control(self, participant: Participant, data: Any) -> Reply:
        if data["operation"] == "querybwe":
            return ("ok", {"estimatedBitrate": 1234567})
        return ("ok",)

    async def _on_text(self, participant: Participant, data: Any) -> Reply:
        if data["to"] == "all":
            targets = [p for p in self.participants.values() if p.id != participant.id]
        elif data["to"] in self.participants:
            targets = [self.participants[data["to"]]]
        else:
            return ("error", "Participant does NOT exist")
        for target in targets:
            await self.notify(
                target,
                "text",
                {
                    "from": participant.id,
                    "to": "all" if data["to"] == "all" else "me",
                    "message": data["message"],
                },
            )
        return ("ok",)

    async def _later(self, participant: Participant, event: str, data: Any) -> None:
        # A push that comes after the request's reply (which is sent as the handler
        # returns, before this timer can fire).
        await asyncio.sleep(0.05)  # the stimulus
        await self.notify(participant, event, data)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
