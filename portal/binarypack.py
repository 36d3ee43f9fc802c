"""BinaryPack, the default serialization of peerjs data connections, and its chunking.

peerjs (npm ``peerjs`` 1.5) packs every value sent on a data connection with
serialization ``"binary"`` (the default, also ``"binary-utf8"``) with
``peerjs-js-binarypack`` 2.x, a MessagePack dialect with no Python package.
This module speaks it for the values JSON-like messages use:

=============  ==========================================================
value          bytes (big-endian lengths and numbers)
=============  ==========================================================
None           ``c0`` (``c1`` and ``d4``-``d7`` decode as JS undefined: None)
False, True    ``c2``, ``c3``
int            ``00``-``7f``, ``e0``-``ff`` (-32..-1), ``cc`` u8, ``d0`` i8,
               ``cd`` u16, ``d1`` i16, ``ce`` u32, ``d2`` i32, ``d3`` i64,
               ``cf`` u64, the first form that fits, in the JS encoder's order
float          ``cb`` IEEE double (``ca`` float32 decodes too); a float with an
               integral value packs as an int, as a JS number does
str            ``b0``+len (up to 15 bytes), ``d8`` u16 len, ``d9`` u32 len, UTF-8
bytes          ``a0``+len, ``da`` u16 len, ``db`` u32 len (JS ArrayBuffer)
list, tuple    ``90``+n, ``dc`` u16 n, ``dd`` u32 n
dict           ``80``+n, ``de`` u16 n, ``df`` u32 n; string keys
=============  ==========================================================

Unlike MessagePack, ``a0``-``bf`` split into raw bytes (``a_``) and strings
(``b_``), and ``d8``/``d9`` are strings while ``da``/``db`` are bytes.

Where the JS encoder is wrong, this one is right and the JS decoder still reads
it: integers from 2**63 to 2**64 - 1 pack as ``cf`` (JS writes 2**63 as ``d3``
and reads it back negative), and every double packs as its exact IEEE bytes (JS
computes them through ``Math.log``, which goes wrong for subnormals). Integers
decode exactly (the JS decoder rounds those beyond 2**53, and every ``d3`` below
-2**31, in doubles). JS orders integer-like object keys first; a dict keeps its
own order. JS packs arrays recursively and overflows its stack before 65536
elements; this module packs and reads them.

peerjs sends a packed message longer than :data:`CHUNK_MTU` bytes as several
messages ``{__peerData: id, n, total, data: bytes}``, each packed, and closes a
connection politely with ``{__peerData: {type: "close"}}``:
:class:`BinaryPackCodec` does both, within a bound on message size.

Everything here is pure: no I/O, no asyncio. Malformed, truncated or hostile
input raises :class:`BinaryPackError` (a ValueError) and nothing else; no
length field makes it allocate more than the input it was given.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any, TypeGuard

__all__ = [
    "CHUNK_MTU",
    "MAX_DEPTH",
    "BinaryPackCodec",
    "BinaryPackError",
    "CloseRequest",
    "Message",
    "pack",
    "unpack",
]

# Nesting limit for both directions: JSON-like chat messages are shallow.
MAX_DEPTH = 32
# peerjs's chunker splits packed messages longer than this (Firefox to Chrome cuts at 16 KiB).
CHUNK_MTU = 16300
# Room for the chunk envelope around CHUNK_MTU bytes of data.
CHUNK_OVERHEAD = 64

_U32 = 0xFFFFFFFF
_DOUBLE = struct.Struct(">d")
_FLOAT = struct.Struct(">f")


class BinaryPackError(ValueError):
    """A value that BinaryPack cannot carry, or bytes that are not a BinaryPack value."""


# -- packing ------------------------------------------------------------------


def pack(value: Any, *, max_depth: int = MAX_DEPTH) -> bytes:
    """The BinaryPack bytes of `value`, as ``peerjs-js-binarypack``'s ``pack`` makes them."""
    out = bytearray()
    _pack(value, out, max_depth)
    return bytes(out)


def _pack(value: Any, out: bytearray, depth: int) -> None:
    if value is None:
        out.append(0xC0)
    elif value is True:
        out.append(0xC3)
    elif value is False:
        out.append(0xC2)
    elif isinstance(value, int):
        _pack_integer(value, out)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise BinaryPackError(f"{value} has no BinaryPack form (JS cannot read it back)")
        if value.is_integer() and -(2**63) <= value < 2**64:
            _pack_integer(int(value), out)  # a JS number with an integral value is an integer
        else:
            out.append(0xCB)
            out += _DOUBLE.pack(value)
    elif isinstance(value, str):
        _pack_sized(_utf8(value), out, 0xB0, 0xD8, 0xD9, "string")
    elif isinstance(value, bytes | bytearray | memoryview):
        _pack_sized(bytes(value), out, 0xA0, 0xDA, 0xDB, "binary")
    elif isinstance(value, list | tuple | dict):
        if depth <= 0:
            raise BinaryPackError("value is nested too deeply")
        if isinstance(value, dict):
            _pack_header(len(value), out, 0x80, 0xDE, 0xDF, "map")
            for key, item in value.items():
                if not isinstance(key, str):
                    raise BinaryPackError(f"map keys must be strings, not {type(key).__name__}")
                _pack(key, out, depth - 1)
                _pack(item, out, depth - 1)
        else:
            _pack_header(len(value), out, 0x90, 0xDC, 0xDD, "array")
            for item in value:
                _pack(item, out, depth - 1)
    else:
        raise BinaryPackError(f"{type(value).__name__} has no BinaryPack form")


def _pack_integer(number: int, out: bytearray) -> None:
    # The order of the JS encoder's checks: the first form that fits wins.
    if -32 <= number <= 0x7F:
        out.append(number & 0xFF)
    elif 0 <= number <= 0xFF:
        out += bytes((0xCC, number))
    elif -128 <= number <= 0x7F:
        out += bytes((0xD0, number & 0xFF))
    elif 0 <= number <= 0xFFFF:
        out.append(0xCD)
        out += number.to_bytes(2, "big")
    elif -32768 <= number <= 0x7FFF:
        out.append(0xD1)
        out += number.to_bytes(2, "big", signed=True)
    elif 0 <= number <= _U32:
        out.append(0xCE)
        out += number.to_bytes(4, "big")
    elif -(2**31) <= number < 2**31:
        out.append(0xD2)
        out += number.to_bytes(4, "big", signed=True)
    elif -(2**63) <= number < 2**63:
        out.append(0xD3)
        out += number.to_bytes(8, "big", signed=True)
    elif 0 <= number < 2**64:
        out.append(0xCF)
        out += number.to_bytes(8, "big")
    else:
        raise BinaryPackError(f"integer {number} is out of the 64-bit range")


def _utf8(text: str) -> bytes:
    try:
        return text.encode()
    except UnicodeEncodeError:
        # Surrogates: pair them up and turn lone ones into U+FFFD, as JS TextEncoder does.
        return text.encode("utf-16-be", "surrogatepass").decode("utf-16-be", "replace").encode()


def _pack_header(
    size: int, out: bytearray, fixed: int, code16: int, code32: int, what: str
) -> None:
    if size <= 0x0F:
        out.append(fixed + size)
    elif size <= 0xFFFF:
        out.append(code16)
        out += size.to_bytes(2, "big")
    elif size <= _U32:
        out.append(code32)
        out += size.to_bytes(4, "big")
    else:
        raise BinaryPackError(f"{what} of {size} elements is too long for BinaryPack")


def _pack_sized(
    data: bytes, out: bytearray, fixed: int, code16: int, code32: int, what: str
) -> None:
    _pack_header(len(data), out, fixed, code16, code32, what)
    out += data


# -- unpacking ----------------------------------------------------------------


def unpack(
    data: bytes | bytearray | memoryview, *, max_size: int | None = None, max_depth: int = MAX_DEPTH
) -> Any:
    """The value of one BinaryPack message; BinaryPackError naming the problem.

    `max_size` bounds the input in bytes; every length inside it is checked
    against the bytes left, so nothing larger than the input is allocated.
    Bytes after the value are an error (peerjs packs one value a message).
    """
    view = memoryview(data).cast("B")
    if max_size is not None and len(view) > max_size:
        raise BinaryPackError(f"message of {len(view)} bytes is over the {max_size}-byte limit")
    reader = _Reader(view, max_depth)
    value = reader.value(0)
    if reader.index != len(view):
        raise BinaryPackError(f"{len(view) - reader.index} bytes after the value")
    return value


class _Reader:
    """A cursor over one message; each read checks that the bytes are there."""

    def __init__(self, view: memoryview, max_depth: int) -> None:
        self.view = view
        self.index = 0
        self.max_depth = max_depth

    def take(self, size: int) -> memoryview:
        end = self.index + size
        if end > len(self.view):
            raise BinaryPackError(
                f"truncated: {size} bytes needed at offset {self.index}, "
                f"{len(self.view) - self.index} left"
            )
        chunk = self.view[self.index : end]
        self.index = end
        return chunk

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def sint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big", signed=True)

    def value(self, depth: int) -> Any:
        code = self.uint(1)
        if code <= 0x7F:
            return code
        if code >= 0xE0:
            return code - 0x100
        if code <= 0x8F:
            return self.map(code & 0x0F, depth)
        if code <= 0x9F:
            return self.array(code & 0x0F, depth)
        if code <= 0xAF:
            return bytes(self.take(code & 0x0F))
        if code <= 0xBF:
            return self.string(code & 0x0F)
        match code:
            case 0xC0 | 0xC1 | 0xD4 | 0xD5 | 0xD6 | 0xD7:
                return None  # c1 and d4-d7 are JS undefined
            case 0xC2:
                return False
            case 0xC3:
                return True
            case 0xCA:
                return _FLOAT.unpack(self.take(4))[0]
            case 0xCB:
                return _DOUBLE.unpack(self.take(8))[0]
            case 0xCC | 0xCD | 0xCE | 0xCF:
                return self.uint(1 << (code - 0xCC))
            case 0xD0 | 0xD1 | 0xD2 | 0xD3:
                return self.sint(1 << (code - 0xD0))
            case 0xD8 | 0xD9:
                return self.string(self.uint(2 if code == 0xD8 else 4))
            case 0xDA | 0xDB:
                return bytes(self.take(self.uint(2 if code == 0xDA else 4)))
            case 0xDC | 0xDD:
                return self.array(self.uint(2 if code == 0xDC else 4), depth)
            case 0xDE | 0xDF:
                return self.map(self.uint(2 if code == 0xDE else 4), depth)
        raise BinaryPackError(f"unknown type byte 0x{code:02x} at offset {self.index - 1}")

    def string(self, size: int) -> str:
        raw = self.take(size)
        try:
            return str(raw, "utf-8")
        except UnicodeDecodeError as exc:
            raise BinaryPackError(f"string is not UTF-8 ({exc.reason})") from None

    def enter(self, depth: int, count: int, per_item: int, what: str) -> None:
        if depth >= self.max_depth:
            raise BinaryPackError(f"nested deeper than {self.max_depth} levels")
        # Every element takes at least one byte: a count beyond the bytes left is a lie.
        left = len(self.view) - self.index
        if count * per_item > left:
            raise BinaryPackError(f"{what} of {count} elements in {left} bytes")

    def array(self, count: int, depth: int) -> list[Any]:
        self.enter(depth, count, 1, "array")
        return [self.value(depth + 1) for _ in range(count)]

    def map(self, count: int, depth: int) -> dict[str, Any]:
        self.enter(depth, count, 2, "map")
        result: dict[str, Any] = {}
        for _ in range(count):
            key = self.value(depth + 1)
            if not isinstance(key, str):
                raise BinaryPackError(f"map key is {type(key).__name__}, not a string")
            result[key] = self.value(depth + 1)
        return result


# -- peerjs data connections: chunking and the close message ---------------------


@dataclass(frozen=True)
class Message:
    """A whole value received on a peerjs BinaryPack data connection."""

    value: Any


@dataclass(frozen=True)
class CloseRequest:
    """The peer closes the connection (peerjs ``close({flush: true})``)."""


@dataclass
class _Partial:
    total: int
    pieces: dict[int, bytes]
    size: int = 0


class BinaryPackCodec:
    """One peerjs BinaryPack data connection's messages, both ways.

    :meth:`decode` turns a data-channel message into a :class:`Message`, a
    :class:`CloseRequest`, or None while a chunked message is incomplete;
    :meth:`encode` turns a value into the data-channel messages peerjs
    expects (chunked above :data:`CHUNK_MTU` bytes).

    A message, whole or reassembled, may be at most `max_message_size` bytes;
    at most `max_pending` chunked messages are incomplete at once (peerjs sends
    chunks in order, so one is usual): a newer one drops the oldest.
    """

    def __init__(
        self,
        *,
        max_message_size: int = 1 << 20,
        max_pending: int = 4,
        max_depth: int = MAX_DEPTH,
        mtu: int = CHUNK_MTU,
    ) -> None:
        if max_message_size < mtu + CHUNK_OVERHEAD or max_pending < 1 or mtu < 1:
            raise ValueError("max_message_size must hold a chunk; max_pending and mtu >= 1")
        self.max_message_size = max_message_size
        self.max_pending = max_pending
        self.max_depth = max_depth
        self.mtu = mtu
        self.partials: dict[int, _Partial] = {}
        self.dropped = 0  # incomplete chunked messages given up for newer ones
        self._next_id = 1  # peerjs numbers its chunked messages from 1

    # -- receiving ----------------------------------------------------------

    def decode(self, frame: str | bytes) -> Message | CloseRequest | None:
        """One data-channel message; BinaryPackError if it is not a valid one."""
        if isinstance(frame, str):
            raise BinaryPackError("text message on a BinaryPack connection")
        value = self._unpack(frame)
        classified = _classify(value)
        if classified is not None:
            return classified
        whole = self._add_chunk(value)
        if whole is None:
            return None
        classified = _classify(self._unpack(whole))
        if classified is None:
            raise BinaryPackError("a chunked message is itself a chunk")
        return classified

    def _unpack(self, data: bytes) -> Any:
        return unpack(data, max_size=self.max_message_size, max_depth=self.max_depth)

    def _add_chunk(self, chunk: dict[str, Any]) -> bytes | None:
        message_id, n, total, data = (chunk.get(k) for k in ("__peerData", "n", "total", "data"))
        if not _is_int(message_id):
            raise BinaryPackError("chunk id (__peerData) must be an integer")
        if not _is_int(total) or not 1 <= total <= self.max_message_size:
            self.partials.pop(message_id, None)
            raise BinaryPackError(f"chunk total must be 1..{self.max_message_size}")
        if not _is_int(n) or not 0 <= n < total:
            self.partials.pop(message_id, None)
            raise BinaryPackError(f"chunk number must be 0..{total - 1}")
        if not isinstance(data, bytes):
            self.partials.pop(message_id, None)
            raise BinaryPackError("chunk data must be binary")
        partial = self.partials.get(message_id)
        if partial is None:
            while len(self.partials) >= self.max_pending:
                del self.partials[next(iter(self.partials))]
                self.dropped += 1
            partial = self.partials[message_id] = _Partial(total, {})
        if partial.total != total or n in partial.pieces:
            del self.partials[message_id]
            raise BinaryPackError(f"chunk {n} of message {message_id} contradicts earlier chunks")
        partial.size += len(data)
        if partial.size > self.max_message_size:
            del self.partials[message_id]
            raise BinaryPackError(f"chunked message is over the {self.max_message_size}-byte limit")
        partial.pieces[n] = data
        if len(partial.pieces) < total:
            return None
        del self.partials[message_id]
        return b"".join(partial.pieces[i] for i in range(total))

    # -- sending ------------------------------------------------------------

    def encode(self, value: Any) -> list[bytes]:
        """The data-channel messages that carry `value` to a peerjs peer."""
        packed = pack(value, max_depth=self.max_depth)
        if len(packed) <= self.mtu:
            return [packed]
        message_id = self._next_id
        self._next_id += 1
        total = -(-len(packed) // self.mtu)
        return [
            pack(
                {
                    "__peerData": message_id,
                    "n": n,
                    "data": packed[n * self.mtu : (n + 1) * self.mtu],
                    "total": total,
                }
            )
            for n in range(total)
        ]


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _classify(value: Any) -> Message | CloseRequest | None:
    """An unpacked value as a message, a close request, or None for a chunk of one."""
    peer_data = _peer_data(value)
    if peer_data is None:
        return Message(value)
    if isinstance(peer_data, dict) and peer_data.get("type") == "close":
        return CloseRequest()
    return None


def _peer_data(value: Any) -> Any:
    """``value.__peerData`` when peerjs would act on it (JS-truthy), else None."""
    if not isinstance(value, dict):
        return None
    peer_data = value.get("__peerData")
    # JS truthiness: only these are false (an empty list or dict is true in JS).
    if peer_data is None or peer_data is False or peer_data == "":
        return None
    if isinstance(peer_data, int | float) and (peer_data == 0 or peer_data != peer_data):
        return None
    return peer_data
