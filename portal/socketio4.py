"""Socket.IO protocol 4 (socket.io-client 2.x) beside protocol 5 (python-socketio 5) (pure).

The packets are written alike (``2["text",{...}]``, ``31["ok",{...}]``,
``0/chat,``) except where the two protocols differ:

- The default namespace: a protocol 4 client is connected to ``/`` as soon as its
  Engine.IO session opens, and never asks; a protocol 5 client sends ``0``
  (``IMPLICIT_CONNECT`` is what the portal hands python-socketio on its behalf).
- The server's CONNECT carries ``{"sid": ...}`` in 5 and nothing in 4.
- The server's refusal of a namespace (type 4) is ``{"message", "data"}`` in 5,
  a bare value in 4 (``4"Not authorized"``).

A client packet is checked as socket.io 2.x's parser checks it before it reaches
python-socketio, so a malformed one ends the connection here, with the reason.
"""

from __future__ import annotations

import json
from typing import Any

# Socket.IO packet types (the same numbers in protocols 4 and 5).
CONNECT, DISCONNECT, EVENT, ACK, ERROR, BINARY_EVENT, BINARY_ACK = range(7)
# What a protocol 5 client sends to join the default namespace.
IMPLICIT_CONNECT = "0"
# Digits of an ack id: socket.io-client counts from 0, and JavaScript numbers are
# exact up to 15 digits.
MAX_ID_DIGITS = 15


class Sio4Error(ValueError):
    """A Socket.IO 4 packet the portal does not accept; str() names the problem."""


class Sio4Unsupported(Sio4Error):
    """A well-formed Socket.IO 4 packet of a kind the portal does not take (binary)."""


def check_client_packet(text: str) -> str:
    """The packet for python-socketio from a protocol 4 client's ``text`` (the same text).

    Raises Sio4Error for a packet that is malformed, of a type a client does not
    send, or binary (the OWT SDKs send none; binary events are not supported).
    """
    if not text or text[0] not in "0123456":
        raise Sio4Error(f"unknown Socket.IO packet type {text[:1]!r}")
    kind = int(text[0])
    if kind in (BINARY_EVENT, BINARY_ACK):
        raise Sio4Unsupported("binary Socket.IO packets are not supported")
    if kind == ERROR:
        raise Sio4Error("a client does not send ERROR packets")
    rest = _skip_namespace(text[1:])
    digits = len(rest) - len(rest.lstrip("0123456789"))
    if digits > MAX_ID_DIGITS:
        raise Sio4Error("ack id is too long")
    has_id, body = digits > 0, rest[digits:]
    if kind in (CONNECT, DISCONNECT):
        if has_id or body:
            name = "CONNECT" if kind == CONNECT else "DISCONNECT"
            raise Sio4Error(f"a {name} packet has no id or data")
        return text
    data = _json(body)
    if kind == EVENT:
        named = isinstance(data, list) and data and isinstance(data[0], str | int | float)
        if not named or isinstance(data[0], bool):  # (a bool is an int to Python)
            raise Sio4Error("an EVENT's data must be a list that starts with the event name")
    elif kind == ACK:
        if not has_id:
            raise Sio4Error("an ACK packet without an id")
        if not isinstance(data, list):
            raise Sio4Error("an ACK's data must be a list")
    return text


def to_client_packet(text: str) -> str:
    """A python-socketio (protocol 5) packet as a protocol 4 client reads it."""
    if not text or text[0] not in (str(CONNECT), str(ERROR)):
        return text
    rest = _skip_namespace(text[1:])
    head = text[: len(text) - len(rest)]
    if text[0] == str(CONNECT):
        return head
    try:
        refusal = json.loads(rest) if rest else None
    except ValueError:
        return text
    if isinstance(refusal, dict):
        value = refusal["data"] if refusal.get("data") is not None else refusal.get("message")
        return head + json.dumps(value, separators=(",", ":"))
    return text


def _skip_namespace(text: str) -> str:
    """``text`` after its namespace (``/chat,``), if it names one."""
    if not text.startswith("/"):
        return text
    comma = text.find(",")
    return "" if comma < 0 else text[comma + 1 :]


def _json(body: str) -> Any:
    if not body:
        raise Sio4Error("a packet without its data")
    try:
        return json.loads(body, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise Sio4Error("a packet whose data is not JSON") from None


def _no_constant(name: str) -> Any:
    # JavaScript's JSON.parse knows no NaN or Infinity.
    raise ValueError(name)
