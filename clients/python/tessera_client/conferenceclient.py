"""ConferenceClient: one participant of a Tessera (or OWT) room, over Socket.IO and WebRTC."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from types import TracebackType
from typing import Any

import socketio
from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpTransceiver,
)

from .errors import ClientConnectionError, ClientError, RequestTimeout
from .eventqueue import EventQueue, Predicate
from .negotiation import PeerNegotiation, codec_preferences, only_codecs
from .publication import Publication
from .roomsignals import (
    HandSignal,
    ReactionSignal,
    SignalError,
    encode_hand,
    encode_reaction,
    parse_signal,
)
from .roomstate import RoomState
from .session import Session
from .signaling import PUSH_EVENTS, SignalingChannel
from .streaminfo import stream_track_kinds
from .subscription import Subscription
from .tokens import (
    decode_ticket,
    decode_token,
    parse_relogin_reply,
    portal_url,
    ticket_refresh_delay,
    token_text,
)

logger = logging.getLogger("tessera_client")

__all__ = ["PUSH_EVENTS", "ConferenceClient", "Listener"]

Listener = Callable[[Any], Any]


class ConferenceClient:
    """A participant in a conference room, speaking the OWT Client-Portal protocol 1.2.

    It behaves on the wire like OWT's JavaScript SDK (``Owt.Conference.ConferenceClient``):
    one Socket.IO connection (WebSocket transport) for signaling, one
    ``RTCPeerConnection`` for all publications and subscriptions, renegotiated by a
    new client offer for every change, with m-lines never removed.

    Room state is kept up to date from the server pushes: ``participants``
    (including this client) and ``streams`` (StreamInfo dicts). Every push is also
    kept in a per-event queue for :meth:`next_event`.

    Typical use::

        client = ConferenceClient()
        await client.join(token)
        publication = await client.publish(video=track)
        subscription = await client.subscribe(stream_id)
        ...
        await client.leave()
    """

    def __init__(
        self,
        *,
        ice_servers: list[RTCIceServer] | None = None,
        sdk_type: str = "Python",
        sdk_version: str = "5.1",
        protocol: str = "1.2",
        reconnect: bool = True,
        rejoin: bool = True,
        bundle_policy: RTCBundlePolicy = RTCBundlePolicy.MAX_BUNDLE,
        request_timeout: float = 10.0,
        reconnection_attempts: int = 10,
        reconnection_delay: float = 0.2,
        reconnection_delay_max: float = 5.0,
    ) -> None:
        # No ICE servers by default: aiortc would otherwise query a public STUN server.
        self.ice_servers: list[RTCIceServer] = list(ice_servers or [])
        self.sdk_type = sdk_type
        self.sdk_version = sdk_version
        self.protocol = protocol
        self.reconnect = reconnect
        self.rejoin = rejoin
        self.bundle_policy = bundle_policy
        self.request_timeout = request_timeout
        self.reconnection_attempts = reconnection_attempts
        self.reconnection_delay = reconnection_delay
        self.reconnection_delay_max = reconnection_delay_max

        #: The room as the login reply and the pushes describe it (see the properties).
        self.room = RoomState()
        #: This client's live publications and subscriptions, by id.
        self.publications: dict[str, Publication] = {}
        self.subscriptions: dict[str, Subscription] = {}
        #: The one peer connection and its negotiations.
        self.negotiation = PeerNegotiation(self.request)
        #: Set while logged in over a live connection; cleared while reconnecting.
        self.connected = asyncio.Event()
        #: Set when the portal sends ``drop`` or the session is lost for good.
        self.dropped = asyncio.Event()
        #: How many times the session was resumed with ``relogin``.
        self.reconnections = 0
        #: How many times the client joined its room again with a token from ``drop``.
        self.rejoins = 0
        #: Every server push, kept per event name until consumed by :meth:`next_event`.
        self.events = EventQueue()
        #: Whether this client's hand is raised (see :meth:`raise_hand`).
        self.hand_raised = False
        #: Ids of the participants whose hand is up, as their ``hand`` signals said.
        self.raised_hands: set[str] = set()

        # The channel does not reconnect by itself: this client runs its own loop that
        # reconnects and then sends ``relogin``.
        self.signaling = self._new_signaling()

        self._ticket: str | None = None
        self._joined = False
        self._logged_in = False
        self._closed = False
        self._lost = False
        self._rejoining = False
        self._early_progress: dict[str, tuple[str, Any]] = {}
        self._listeners: dict[str, list[Listener]] = {}
        self._tasks: set[asyncio.Future[Any]] = set()
        self._reconnect_task: asyncio.Future[Any] | None = None
        self._ticket_task: asyncio.Future[Any] | None = None

    def _new_signaling(self) -> SignalingChannel:
        channel: SignalingChannel | None = None

        def on_disconnect(reason: Any = None) -> None:
            # A channel replaced on rejoin may still report its end: it is not ours now.
            if channel is self.signaling:
                self._on_disconnect(reason)

        channel = SignalingChannel(
            self._dispatch, on_disconnect, connect_timeout=self.request_timeout
        )
        return channel

    # ------------------------------------------------------------------ state

    @property
    def sio(self) -> socketio.AsyncClient:
        """The Socket.IO client of the signaling channel."""
        return self.signaling.sio

    @property
    def info(self) -> dict[str, Any]:
        """The login reply."""
        return self.room.info

    @property
    def participant_id(self) -> str | None:
        return self.room.participant_id

    @property
    def room_id(self) -> str | None:
        return self.room.room_id

    @property
    def participants(self) -> dict[str, dict[str, Any]]:
        """participant id -> {"id", "user", "role"}, this client included."""
        return self.room.participants

    @property
    def streams(self) -> dict[str, dict[str, Any]]:
        """stream id -> StreamInfo."""
        return self.room.streams

    @property
    def pc(self) -> RTCPeerConnection | None:
        """The one peer connection (created by the first publish or subscribe)."""
        return self.negotiation.pc

    @property
    def transport_id(self) -> str | None:
        """The portal's id of that connection's transport (from the first session reply)."""
        return self.negotiation.transport_id

    @property
    def transport_ready(self) -> asyncio.Event:
        """Set on ``progress {id: transport id, status: "ready"}`` (ICE and DTLS up)."""
        return self.negotiation.transport_ready

    @property
    def on_drop(self) -> asyncio.Event:
        """The same event as :attr:`dropped`."""
        return self.dropped

    @property
    def is_joined(self) -> bool:
        """Logged in and neither left nor lost (the connection may be reconnecting)."""
        return self._logged_in and not self._closed and not self._lost

    @property
    def reconnection_ticket(self) -> str | None:
        """The current reconnection ticket, if the portal issued one."""
        return self._ticket

    async def __aenter__(self) -> ConferenceClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.leave()

    # ------------------------------------------------------------- join/leave

    async def join(
        self, token: str | bytes, *, origin: str | None = None, timeout: float | None = None
    ) -> dict[str, Any]:
        """Connect to the portal named in ``token`` and log in; returns the login reply.

        ``token`` is the body of the REST answer (``POST /v1/rooms/{room}/tokens``) as
        it was read, text or bytes.

        ``origin`` is sent as the WebSocket ``Origin`` header. Raises ``ValueError``
        for a malformed token, :class:`ClientConnectionError` when the portal cannot
        be reached and :class:`ClientError` when it refuses the login.
        """
        if self._joined:
            raise RuntimeError("join() was already called on this client")
        if self._closed:
            raise RuntimeError("This client has left; create a new one")
        timeout = self.request_timeout if timeout is None else timeout
        token = token_text(token)
        self.signaling.url = portal_url(decode_token(token))
        self.signaling.headers = {"Origin": origin} if origin else {}
        self._joined = True
        try:
            await self.signaling.connect()
        except Exception as exc:
            self._joined = False
            await self.signaling.disconnect()
            raise ClientConnectionError(
                f"Cannot connect to the portal at {self.signaling.url}: {exc}"
            ) from exc
        try:
            info = await self.signaling.emit("login", self._login_message(token), timeout)
            if not isinstance(info, dict):
                raise ClientError(f"Unexpected login reply: {info!r}")
        except ClientError:
            self._joined = False
            await self.signaling.disconnect()
            raise
        self._apply_login(info)
        self.connected.set()
        self._start_ticket_refresh()
        return info

    def _login_message(self, token: str) -> dict[str, Any]:
        return {
            "token": token,
            "userAgent": {"sdk": {"type": self.sdk_type, "version": self.sdk_version}},
            "protocol": self.protocol,
        }

    async def leave(self) -> None:
        """Log out, close the peer connection and disconnect. Calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        self._cancel(self._reconnect_task)
        self._cancel(self._ticket_task)
        if self.connected.is_set():
            try:
                await self.signaling.emit("logout", None, min(self.request_timeout, 5.0))
            except ClientError as exc:
                logger.debug("logout: %s", exc)
        self.connected.clear()
        self._end_everything(ClientConnectionError("The client has left"))
        await self.negotiation.close()
        await self.signaling.disconnect()
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                task.cancel()

    # --------------------------------------------------------------- requests

    async def request(self, name: str, data: Any = None, timeout: float = 10.0) -> Any:
        """Emit ``name`` with ``data`` and wait for the two-argument ack ``(status, data)``.

        Returns the reply data on ``"ok"``; raises :class:`ClientError` with the
        server's message on ``"error"`` and :class:`RequestTimeout` (a
        ``ClientError`` and a ``TimeoutError``) when no ack comes within
        ``timeout`` seconds. While the client is reconnecting, the request waits
        for the session to be resumed (within the same timeout).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        await self._wait_connected(name, timeout)
        return await self.signaling.emit(name, data, max(deadline - loop.time(), 0.001))

    async def send_text(self, message: str, to: str = "all") -> None:
        """Send a text message to everyone (``"all"``) or to one participant id."""
        await self.request("text", {"to": to, "message": message}, self.request_timeout)

    async def raise_hand(self) -> None:
        """Raise this client's hand: everyone gets a ``hand`` signal (see roomsignals.py).

        Participants who join later are told too, while the hand stays up.
        """
        await self.send_text(encode_hand(True))
        self.hand_raised = True
        if self.participant_id is not None:
            self.raised_hands.add(self.participant_id)

    async def lower_hand(self) -> None:
        """Lower this client's hand (everyone gets a ``hand`` signal with ``raised`` false)."""
        await self.send_text(encode_hand(False))
        self.hand_raised = False
        self.raised_hands.discard(self.participant_id or "")

    async def send_reaction(self, emoji: str) -> None:
        """Send a reaction, one of ``roomsignals.REACTIONS``; ``SignalError`` for another."""
        await self.send_text(encode_reaction(emoji))

    async def next_event(
        self, event: str, predicate: Predicate | None = None, timeout: float = 10.0
    ) -> Any:
        """The next ``event`` push (``participant``, ``stream``, ``text``, ``progress``, ``drop``)
        whose data satisfies ``predicate``.

        Pushes that arrived earlier and were not consumed yet count too, so a test
        can trigger something first and wait for its notification afterwards.
        Raises :class:`RequestTimeout` (a ``TimeoutError``) after ``timeout`` seconds.
        """
        return await self.events.get(event, predicate, timeout)

    def on(self, event: str, listener: Listener) -> None:
        """Call ``listener(data)`` for every ``event`` push (a coroutine function is scheduled)."""
        self._listeners.setdefault(event, []).append(listener)

    # -------------------------------------------------------- publish/subscribe

    async def publish(
        self,
        *,
        audio: MediaStreamTrack | None = None,
        video: MediaStreamTrack | None = None,
        attributes: dict[str, Any] | None = None,
        audio_source: str = "mic",
        video_source: str = "camera",
        codecs: Mapping[str, Sequence[str]] | None = None,
        timeout: float | None = None,
    ) -> Publication:
        """Publish an audio and/or a video track; returns once the answer is applied.

        Adds sendonly transceivers (audio first), creates an offer, sends
        ``publish`` with the mids and then the offer with ``soac``. Wait for
        ``publication.ready`` (or :meth:`Publication.wait_ready`) for media to flow.
        ``codecs`` maps a kind to the only codecs to offer for it, in order
        (``{"video": ["h264"]}``), as a browser limited with ``setCodecPreferences``.
        """
        if audio is None and video is None:
            raise ValueError("Nothing to publish: give an audio and/or a video track")
        for kind, track in (("audio", audio), ("video", video)):
            if track is not None and track.kind != kind:
                raise ValueError(f"The {kind} track is a {track.kind} track")
        preferences = {kind: only_codecs(kind, names) for kind, names in (codecs or {}).items()}
        timeout = self.request_timeout if timeout is None else timeout
        attrs = dict(attributes or {})
        self._check_joined()
        async with self.negotiation.lock:
            self._check_joined()
            pc = self._ensure_pc()
            transceivers: dict[str, RTCRtpTransceiver] = {}
            tracks: dict[str, MediaStreamTrack] = {}
            sources: dict[str, str] = {}
            for kind, track, source in (
                ("audio", audio, audio_source),
                ("video", video, video_source),
            ):
                if track is not None:
                    transceivers[kind] = pc.addTransceiver(track, direction="sendonly")
                    if kind in preferences:
                        transceivers[kind].setCodecPreferences(preferences[kind])
                    tracks[kind] = track
                    sources[kind] = source
            await self.negotiation.create_offer(transceivers.values(), stop_sending=True)
            message = {
                "media": {
                    "tracks": [
                        {"type": kind, "mid": t.mid, "source": sources[kind]}
                        for kind, t in transceivers.items()
                    ]
                },
                "attributes": attrs,
                "transport": self.negotiation.transport_message(),
            }
            try:
                reply = await self.request("publish", message, timeout)
                stream_id, transport_id = self.negotiation.session_reply(reply)
            except ClientError:
                self.negotiation.deactivate(transceivers.values(), stop_sending=True)
                raise
            publication = Publication(
                self,
                stream_id,
                transceivers,
                tracks,
                attrs,
                sources=sources,
                codecs={kind: list(names) for kind, names in (codecs or {}).items()},
            )
            self.publications[stream_id] = publication
            self._apply_early_progress(publication)
            try:
                await self.negotiation.exchange(transport_id, timeout)
            except ClientError:
                self._abandon(publication, "unpublish", stop_sending=True)
                raise
        return publication

    async def subscribe(
        self,
        stream_id: str,
        *,
        audio: bool = True,
        video: bool = True,
        video_parameters: dict[str, Any] | None = None,
        video_codecs: list[str] | None = None,
        timeout: float | None = None,
    ) -> Subscription:
        """Subscribe to a stream of the room; returns once the answer is applied.

        Asks only for the kinds the stream has (when the stream is known from
        ``streams``). ``video_parameters`` (``resolution``, ``framerate``,
        ``bitrate``, ``keyFrameInterval``) go with the video track request.
        ``video_codecs`` (e.g. ``["h264"]``) orders the offered codecs, as OWT's
        JavaScript SDK does with ``options.video.codecs``. The remote tracks are
        in ``subscription.audio_track`` / ``video_track``.
        """
        options: dict[str, Any] = {
            "audio": audio,
            "video": video,
            "video_parameters": video_parameters,
            "video_codecs": video_codecs,
        }
        stream = self.streams.get(stream_id)
        if stream is not None:
            kinds = stream_track_kinds(stream)
            audio = audio and "audio" in kinds
            video = video and "video" in kinds
        if not audio and not video:
            raise ValueError(f"Nothing to subscribe to in stream {stream_id}")
        timeout = self.request_timeout if timeout is None else timeout
        self._check_joined()
        async with self.negotiation.lock:
            self._check_joined()
            pc = self._ensure_pc()
            transceivers: dict[str, RTCRtpTransceiver] = {}
            for kind, wanted in (("audio", audio), ("video", video)):
                if wanted:
                    transceivers[kind] = pc.addTransceiver(kind, direction="recvonly")
            if video_codecs and "video" in transceivers:
                transceivers["video"].setCodecPreferences(codec_preferences(video_codecs))
            await self.negotiation.create_offer(transceivers.values(), stop_sending=False)
            track_requests: list[dict[str, Any]] = []
            for kind, transceiver in transceivers.items():
                track_request: dict[str, Any] = {
                    "type": kind,
                    "mid": transceiver.mid,
                    "from": stream_id,
                }
                if kind == "video" and video_parameters:
                    track_request["parameters"] = video_parameters
                track_requests.append(track_request)
            message = {
                "media": {"tracks": track_requests},
                "transport": self.negotiation.transport_message(),
            }
            try:
                reply = await self.request("subscribe", message, timeout)
                subscription_id, transport_id = self.negotiation.session_reply(reply)
            except ClientError:
                self.negotiation.deactivate(transceivers.values(), stop_sending=False)
                raise
            subscription = Subscription(self, subscription_id, stream_id, transceivers)
            subscription.options = options
            self.subscriptions[subscription_id] = subscription
            self.negotiation.own_mids(subscription)
            self._apply_early_progress(subscription)
            try:
                await self.negotiation.exchange(transport_id, timeout)
            except ClientError:
                self._abandon(subscription, "unsubscribe", stop_sending=False)
                raise
        return subscription

    # ------------------------------------------- peer connection, session ends

    def _ensure_pc(self) -> RTCPeerConnection:
        """The peer connection, created on first use (a subclass may add handlers to it)."""
        return self.negotiation.ensure_pc(self.ice_servers, self.bundle_policy)

    def _abandon(self, session: Session, stop_request: str, *, stop_sending: bool) -> None:
        """Forget a session whose negotiation failed and tell the portal, without waiting."""
        session._stopped = True
        session._end()
        self._forget(session)
        self.negotiation.deactivate(session.transceivers.values(), stop_sending=stop_sending)
        if self.connected.is_set():
            self._spawn(self._quiet_request(stop_request, {"id": session.id}))

    async def retire_session(self, session: Session, *, stop_sending: bool) -> None:
        """A session stopped (unpublish/unsubscribe): mark its m-lines inactive, offer again."""
        self._forget(session)
        negotiation = self.negotiation
        async with negotiation.lock:
            negotiation.deactivate(session.transceivers.values(), stop_sending=stop_sending)
            if negotiation.pc is None or negotiation.transport_id is None or not self.is_joined:
                return
            try:
                await negotiation.create_offer((), stop_sending=stop_sending)
                await negotiation.exchange(negotiation.transport_id, self.request_timeout)
            except ClientError as exc:
                logger.warning("Renegotiation after stopping %s failed: %s", session.id, exc)

    def _forget(self, session: Session) -> None:
        self.publications.pop(session.id, None)
        self.subscriptions.pop(session.id, None)
        self.negotiation.forget(session)

    # ------------------------------------------------------------ server pushes

    def _dispatch(self, event: str, data: Any) -> None:
        """Apply one server push (live or replayed after relogin) and queue it."""
        try:
            if event == "participant":
                self.room.apply_participant(data)
            elif event == "stream":
                self._apply_stream(data)
            elif event == "progress":
                self._apply_progress(data)
            elif event == "drop":
                self._apply_drop(data)
        except Exception:
            logger.exception("Cannot apply the '%s' push %r", event, data)
        self._notify(event, data)
        if event == "text":
            self._apply_signal(data)
        elif event == "participant":
            self._hands_after_participant(data)

    def _apply_signal(self, data: Any) -> None:
        """A ``text`` push carrying a hand raise or a reaction: the ``hand`` / ``reaction``
        event ``{from, raised}`` / ``{from, emoji}`` (the ``text`` event came first)."""
        if not isinstance(data, dict) or not isinstance(data.get("from"), str):
            return
        sender: str = data["from"]
        try:
            signal = parse_signal(data.get("message"))
        except SignalError as exc:
            logger.warning("Ignoring a signal from %s: %s", sender, exc)
            return
        if isinstance(signal, HandSignal):
            if signal.raised:
                self.raised_hands.add(sender)
            else:
                self.raised_hands.discard(sender)
            self._notify("hand", {"from": sender, "raised": signal.raised})
        elif isinstance(signal, ReactionSignal):
            self._notify("reaction", {"from": sender, "emoji": signal.emoji})

    def _hands_after_participant(self, data: Any) -> None:
        if not isinstance(data, dict):
            return
        if data.get("action") == "leave" and isinstance(data.get("data"), str):
            self.raised_hands.discard(data["data"])
        elif data.get("action") == "join" and self.hand_raised:
            # Text is not kept for latecomers: tell the newcomer the hand is up.
            newcomer = data.get("data")
            if isinstance(newcomer, dict) and isinstance(newcomer.get("id"), str):
                self._spawn(
                    self._quiet_request(
                        "text", {"to": newcomer["id"], "message": encode_hand(True)}
                    )
                )

    def _notify(self, event: str, data: Any) -> None:
        """Queue ``event`` for :meth:`next_event` and call its listeners."""
        self.events.put(event, data)
        for listener in list(self._listeners.get(event, ())):
            try:
                result = listener(data)
                if inspect.isawaitable(result):
                    self._spawn(_await(result))
            except Exception:
                logger.exception("A '%s' listener failed", event)

    def _apply_login(self, info: dict[str, Any]) -> None:
        self.room.apply_login(info)
        ticket = info.get("reconnectionTicket")
        self._ticket = ticket if isinstance(ticket, str) else None
        self._logged_in = True
        # A new session (join, or rejoin with new ids): hands are heard afresh.
        self.raised_hands = set()
        if self.hand_raised and self.participant_id is not None:
            self.raised_hands.add(self.participant_id)
            self._spawn(self._quiet_request("text", {"to": "all", "message": encode_hand(True)}))

    def _apply_stream(self, data: Any) -> None:
        removed = self.room.apply_stream(data)
        if removed is None:
            return
        publication = self.publications.get(str(removed))
        if publication is not None:
            publication._end()
        for subscription in list(self.subscriptions.values()):
            if subscription.stream_id == removed:
                subscription._end()

    def _apply_progress(self, data: Any) -> None:
        if not isinstance(data, dict):
            return
        status = str(data.get("status"))
        transport_id = data.get("id")
        session_id = data.get("sessionId")
        if session_id is None and transport_id != self.negotiation.transport_id:
            # An older portal reports a session on a transport of its own.
            session_id = transport_id if self._session(str(transport_id)) else None
        if session_id is not None:
            session = self._session(str(session_id))
            if session is not None:
                session._on_progress(status, data.get("data"))
            elif len(self._early_progress) < 100:
                self._early_progress[str(session_id)] = (status, data.get("data"))
            return
        if status == "soac":
            signaling = data.get("data")
            # Server candidates are ignored: the answer already carries them.
            if isinstance(signaling, dict) and signaling.get("type") == "answer":
                self.negotiation.answer_arrived(transport_id, signaling)
        elif status == "ready":
            self.negotiation.transport_ready.set()
        elif status == "error":
            self.negotiation.transport_failed(transport_id, data.get("data"))

    def _apply_drop(self, data: Any) -> None:
        rejoin = rejoin_of(data)
        if rejoin is not None and self.rejoin and not self._closed and not self._lost:
            # The room's media server died: the portal gives a token to join it again.
            token, reason = rejoin
            self._rejoining = True
            self.connected.clear()
            self._cancel(self._reconnect_task)
            self._spawn(self._rejoin(token, reason))
            return
        self.dropped.set()
        self._spawn(self._lose_session("dropped by the portal"))

    def _session(self, session_id: str) -> Session | None:
        return self.publications.get(session_id) or self.subscriptions.get(session_id)

    def _apply_early_progress(self, session: Session) -> None:
        early = self._early_progress.pop(session.id, None)
        if early is not None:
            session._on_progress(*early)

    # ------------------------------------------------- connection and reconnection

    async def _quiet_request(self, name: str, data: Any) -> None:
        try:
            await self.signaling.emit(name, data, self.request_timeout)
        except ClientError as exc:
            logger.debug("%s: %s", name, exc)

    def _check_joined(self) -> None:
        if self._closed:
            raise ClientConnectionError("The client has left")
        if self._lost:
            raise ClientConnectionError("The session with the portal was lost")
        if not self._logged_in:
            raise ClientConnectionError("Not joined")

    async def _wait_connected(self, name: str, timeout: float) -> None:
        if self.connected.is_set():
            return
        self._check_joined()
        connected = asyncio.ensure_future(self.connected.wait())
        dropped = asyncio.ensure_future(self.dropped.wait())
        try:
            await asyncio.wait(
                {connected, dropped}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            connected.cancel()
            dropped.cancel()
        if self.connected.is_set():
            return
        self._check_joined()
        if self.dropped.is_set():
            raise ClientConnectionError("The session with the portal was lost")
        raise RequestTimeout(f"Request '{name}' timed out after {timeout:g} s (reconnecting)")

    def _on_disconnect(self, reason: Any = None) -> None:
        logger.info("Disconnected from the portal (%s)", reason)
        self.connected.clear()
        self.signaling.fail_pending(ClientConnectionError("The connection to the portal was lost"))
        self._cancel(self._ticket_task)
        if self._closed or self._lost or not self._logged_in or self._rejoining:
            return
        if self._reconnect_task is not None and not self._reconnect_task.done():
            return  # the reconnection loop is already at work
        if not self.reconnect or self._ticket is None or self.dropped.is_set():
            self._spawn(self._lose_session(f"disconnected ({reason})"))
            return
        self._reconnect_task = self._spawn(self._reconnect_loop())

    async def _reconnect_loop(self) -> None:
        """Reconnect the socket and ``relogin`` with the ticket, with backoff."""
        delay = self.reconnection_delay
        for attempt in range(1, self.reconnection_attempts + 1):
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.reconnection_delay_max)
            if self._closed or self._lost or self.dropped.is_set() or self._ticket is None:
                break
            if not self.signaling.connected:
                try:
                    await self.signaling.connect()
                except Exception as exc:
                    logger.info("Reconnection attempt %d failed: %s", attempt, exc)
                    await self.signaling.disconnect()
                    continue
            try:
                reply = await self.signaling.emit("relogin", self._ticket, self.request_timeout)
            except (ClientConnectionError, RequestTimeout) as exc:
                logger.info("relogin attempt %d failed: %s", attempt, exc)
                await self.signaling.disconnect()
                continue
            except ClientError as exc:
                logger.warning("relogin refused: %s", exc)
                break
            try:
                ticket, messages = parse_relogin_reply(reply)
            except ValueError as exc:
                logger.warning("relogin reply not understood (%s): %r", exc, reply)
                ticket, messages = self._ticket, []
            self._ticket = ticket
            self.reconnections += 1
            self._reconnect_task = None
            for message in messages:
                self._dispatch(message["event"], message.get("data"))
            if self._lost or self._closed:
                return
            self.connected.set()
            self._start_ticket_refresh()
            logger.info("Session resumed (%d queued notifications)", len(messages))
            return
        self._reconnect_task = None
        await self._lose_session("reconnection failed")

    async def _rejoin(self, token: str, reason: str) -> None:
        """Join the room again with the token of a ``drop`` (its media server died): on a
        new connection to the same portal and a new peer connection, publish every
        publication again with the same tracks and subscribe to the mixed views again.

        Events: ``rejoining`` ``{reason}``; then ``rejoined`` ``{reason, publications,
        subscriptions, failed}`` (old id -> the new Publication / Subscription, old id ->
        why it could not be made again) or ``rejoinfailed`` ``{reason}`` (the session is
        lost). Other subscriptions end with "Source stream loss": their streams are gone.
        """
        self._notify("rejoining", {"reason": reason})
        logger.warning("The room's media server stopped (%s): joining again", reason)
        publications = list(self.publications.values())
        mixed = [s for s in self.subscriptions.values() if self._is_mixed(s.stream_id)]
        for subscription in self.subscriptions.values():
            subscription._stopped = True  # its remote tracks end: a waiting recv() returns
            if subscription not in mixed:
                subscription.error = SOURCE_STREAM_LOSS
        self._cancel(self._ticket_task)
        self._end_everything(ClientConnectionError(f"The room's media server stopped: {reason}"))
        self.publications.clear()
        self.subscriptions.clear()
        self._early_progress.clear()
        await self.negotiation.close()
        self.negotiation = PeerNegotiation(self.request)
        # A new Socket.IO client: the old one may still be closing the dropped connection.
        old, self.signaling = self.signaling, self._new_signaling()
        self.signaling.url, self.signaling.headers = old.url, old.headers
        await old.disconnect()
        try:
            await self.signaling.connect()
            info = await self.signaling.emit(
                "login", self._login_message(token), self.request_timeout
            )
            if not isinstance(info, dict):
                raise ClientError(f"Unexpected login reply: {info!r}")
        except Exception as exc:
            self._rejoining = False
            why = f"{reason}; joining again failed: {exc}"
            self._notify("rejoinfailed", {"reason": why})
            await self._lose_session(why)
            return
        self._rejoining = False
        if self._closed:
            return
        self._apply_login(info)
        self.rejoins += 1
        self.connected.set()
        self._start_ticket_refresh()
        new_publications: dict[str, Publication] = {}
        new_subscriptions: dict[str, Subscription] = {}
        failed: dict[str, str] = {}
        for publication in publications:
            try:
                new_publications[publication.id] = await self.publish(
                    audio=publication.tracks.get("audio"),
                    video=publication.tracks.get("video"),
                    attributes=publication.attributes,
                    audio_source=publication.sources.get("audio", "mic"),
                    video_source=publication.sources.get("video", "camera"),
                    codecs=publication.codecs or None,
                )
            except ClientError as exc:
                failed[publication.id] = str(exc)
        for subscription in mixed:
            try:
                new_subscriptions[subscription.id] = await self.subscribe(
                    subscription.stream_id, **subscription.options
                )
            except (ClientError, ValueError) as exc:
                failed[subscription.id] = str(exc)
        if failed:
            logger.warning("Joined again, but not all was made again: %s", failed)
        self._notify(
            "rejoined",
            {
                "reason": reason,
                "publications": new_publications,
                "subscriptions": new_subscriptions,
                "failed": failed,
            },
        )

    def _is_mixed(self, stream_id: str) -> bool:
        stream = self.streams.get(stream_id)
        return isinstance(stream, dict) and stream.get("type") == "mixed"

    async def _lose_session(self, reason: str) -> None:
        """The session is gone for good: set ``dropped`` and release everything."""
        if self._lost or self._closed:
            return
        self._lost = True
        logger.warning("Session with the portal lost: %s", reason)
        self.connected.clear()
        self.dropped.set()
        self._cancel(self._ticket_task)
        self._cancel(self._reconnect_task)
        self._end_everything(ClientConnectionError(f"The session was lost: {reason}"))
        await self.negotiation.close()
        await self.signaling.disconnect()

    def _end_everything(self, error: ClientError) -> None:
        self.signaling.fail_pending(error)
        self.negotiation.fail(error)
        for session in [*self.publications.values(), *self.subscriptions.values()]:
            session._end()

    def _start_ticket_refresh(self) -> None:
        self._cancel(self._ticket_task)
        self._ticket_task = None
        if self.reconnect and self._ticket is not None:
            self._ticket_task = self._spawn(self._ticket_refresh_loop())

    async def _ticket_refresh_loop(self) -> None:
        """Refresh the reconnection ticket at half of its remaining lifetime."""
        while self._ticket is not None:
            try:
                ticket_info = decode_ticket(self._ticket)
            except ValueError:
                logger.info("Reconnection ticket is opaque; not refreshing it")
                return
            delay = ticket_refresh_delay(ticket_info, time.time())
            if delay is None:
                return
            await asyncio.sleep(delay)
            try:
                ticket = await self.signaling.emit(
                    "refreshReconnectionTicket", None, self.request_timeout
                )
            except ClientConnectionError:
                return  # resumed after relogin
            except ClientError as exc:
                logger.warning("Refreshing the reconnection ticket failed: %s", exc)
                continue
            if not isinstance(ticket, str):
                logger.warning("Unexpected reconnection ticket: %r", ticket)
                return
            self._ticket = ticket

    # --------------------------------------------------------------- utilities

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("Background task failed", exc_info=task.exception())

    @staticmethod
    def _cancel(task: asyncio.Future[Any] | None) -> None:
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()


async def _await(awaitable: Any) -> None:
    await awaitable


#: The error a subscription ends with when its stream is gone (as OWT's portal says it).
SOURCE_STREAM_LOSS = "Source stream loss"


def rejoin_of(data: Any) -> tuple[str, str] | None:
    """(token, reason) of a ``drop`` that invites the client to join again (Tessera's
    ``{reason, rejoin}`` when the room's media server died), or None for a plain drop."""
    if not isinstance(data, dict):
        return None
    token, reason = data.get("rejoin"), data.get("reason")
    if not isinstance(token, str) or not token or len(token) > 8192:
        return None
    return token, reason if isinstance(reason, str) else "the room's media server stopped"
