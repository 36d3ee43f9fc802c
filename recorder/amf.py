"""AMF0: the value encoding of RTMP's command and data messages (pure)."""

from __future__ import annotations

import struct
from typing import Any


class AmfError(ValueError):
    """Bytes that are not well-formed AMF0."""


def amf0_encode(*values: Any) -> bytes:
    """AMF0 values (numbers, booleans, strings, None, dicts as objects)."""
    out = bytearray()
    for value in values:
        if value is None:
            out.append(0x05)
        elif isinstance(value, bool):
            out += bytes((0x01, 1 if value else 0))
        elif isinstance(value, int | float):
            out.append(0x00)
            out += struct.pack(">d", float(value))
        elif isinstance(value, str):
            data = value.encode()
            if len(data) > 0xFFFF:
                out.append(0x0C)
                out += struct.pack(">I", len(data))
            else:
                out.append(0x02)
                out += struct.pack(">H", len(data))
            out += data
        elif isinstance(value, dict):
            out.append(0x03)
            for key, item in value.items():
                name = str(key).encode()
                out += struct.pack(">H", len(name)) + name + amf0_encode(item)
            out += b"\x00\x00\x09"
        else:
            raise TypeError(f"cannot encode {type(value).__name__} as AMF0")
    return bytes(out)


def amf0_decode(data: bytes) -> list[Any]:
    """The AMF0 values of a command message (raises AmfError when malformed)."""
    values: list[Any] = []
    pos = 0
    try:
        while pos < len(data):
            value, pos = _amf0_value(data, pos)
            values.append(value)
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise AmfError("malformed AMF0 data") from exc
    return values


def _amf0_value(data: bytes, pos: int) -> tuple[Any, int]:
    marker = data[pos]
    pos += 1
    if marker == 0x00:
        return struct.unpack_from(">d", data, pos)[0], pos + 8
    if marker == 0x01:
        return bool(data[pos]), pos + 1
    if marker in (0x02, 0x0C):
        size_format, width = (">H", 2) if marker == 0x02 else (">I", 4)
        size = struct.unpack_from(size_format, data, pos)[0]
        pos += width
        return data[pos : pos + size].decode(), pos + size
    if marker in (0x03, 0x08):
        if marker == 0x08:
            pos += 4  # an ECMA array's count, a hint only
        obj: dict[str, Any] = {}
        while True:
            size = struct.unpack_from(">H", data, pos)[0]
            pos += 2
            if size == 0 and data[pos] == 0x09:
                return obj, pos + 1
            key = data[pos : pos + size].decode()
            obj[key], pos = _amf0_value(data, pos + size)
    if marker in (0x05, 0x06):
        return None, pos
    if marker == 0x0A:
        count = struct.unpack_from(">I", data, pos)[0]
        pos += 4
        items = []
        for _ in range(count):
            item, pos = _amf0_value(data, pos)
            items.append(item)
        return items, pos
    if marker == 0x0B:
        return struct.unpack_from(">d", data, pos)[0], pos + 10  # a date: ms, time zone
    raise AmfError(f"unsupported AMF0 value (type {marker})")
