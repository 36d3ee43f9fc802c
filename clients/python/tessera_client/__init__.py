"""tessera_client: a Python client for Tessera, speaking the OWT Client-Portal protocol 1.2.

Only the public protocol is used (Socket.IO signaling, one renegotiated WebRTC
peer connection), so the client works with any portal that speaks it.
"""

from __future__ import annotations

from aiortc import RTCIceServer

from .conferenceclient import ConferenceClient
from .errors import ClientConnectionError, ClientError, NegotiationError, RequestTimeout
from .eventqueue import EventQueue
from .peer import (
    DataConnection,
    MediaCall,
    MeshRoom,
    PeerClient,
    PeerError,
    PeerEvent,
    PeerUnavailable,
    PortalRoom,
)
from .publication import Publication
from .roomsignals import (
    REACTIONS,
    HandSignal,
    ReactionSignal,
    SignalError,
    encode_hand,
    encode_reaction,
    parse_signal,
)
from .session import Session
from .streaminfo import apply_stream_update, stream_track_kinds, stream_tracks
from .subscription import Subscription
from .tokens import (
    decode_ticket,
    decode_token,
    encode_b64_json,
    parse_relogin_reply,
    portal_url,
    ticket_refresh_delay,
)

__version__ = "0.1.0"

__all__ = [
    "REACTIONS",
    "ClientConnectionError",
    "ClientError",
    "ConferenceClient",
    "DataConnection",
    "EventQueue",
    "HandSignal",
    "MediaCall",
    "MeshRoom",
    "NegotiationError",
    "PeerClient",
    "PeerError",
    "PeerEvent",
    "PeerUnavailable",
    "PortalRoom",
    "Publication",
    "RTCIceServer",
    "ReactionSignal",
    "RequestTimeout",
    "Session",
    "SignalError",
    "Subscription",
    "__version__",
    "apply_stream_update",
    "decode_ticket",
    "decode_token",
    "encode_b64_json",
    "encode_hand",
    "encode_reaction",
    "parse_relogin_reply",
    "parse_signal",
    "portal_url",
    "stream_track_kinds",
    "stream_tracks",
    "ticket_refresh_delay",
]
