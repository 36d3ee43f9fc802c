"""BinaryPack (peerjs's default data serialization): round trips, the JS library, hostile bytes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tessera.portal.binarypack import (
    CHUNK_MTU,
    MAX_DEPTH,
    BinaryPackCodec,
    BinaryPackError,
    CloseRequest,
    Message,
    pack,
    unpack,
)
from tests.nodedriver import ROOT, run_node

NODE_SCRIPT = Path(__file__).with_name("binarypack_node.mjs")
JS_LIBRARY = ROOT / "node_modules" / "peerjs-js-binarypack" / "dist" / "binarypack.mjs"

# Values JSON-like messages carry, each in every size class of its type. Integers stay
# within 2**53 so that a JS number holds them exactly.
CASES: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    127,
    128,
    255,
    256,
    65535,
    65536,
    2**32 - 1,
    2**32,
    2**53 - 1,
    -1,
    -32,
    -33,
    -128,
    -129,
    -32768,
    -32769,
    -(2**31),
    -(2**31) - 1,
    -(2**32) - 1,
    -(2**53) + 1,
    1.5,
    -0.1,
    3.141592653589793,
    123456.789,
    1e-300,
    -2.5e-300,
    "",
    "a",
    "x" * 15,
    "x" * 16,
    "é😀 ünïcødé",
    "y" * 65535,
    "z" * 65536,
    [],
    [1, "two", 3.5, None, [True, False]],
    list(range(16)),
    list(range(3000)),
    {},
    {"from": "p1", "to": "all", "message": "hello"},
    {f"k{i}": i for i in range(16)},
    {"nested": {"deeper": [{"deepest": ["end"]}]}},
    b"",
    b"\x00\x01\xff",
    bytes(range(16)),
    bytes(65535),
    bytes(65536),
]


# The JS encoder recurses once per element: it overflows its stack before 65536 of them, so
# the ``dd`` and ``df`` forms are checked one way (JS reads what Python packs).
# JS also throws "Invalid integer" for integral numbers of 2**64 and more; Python packs them
# as doubles, which JS reads.
ONE_WAY: list[Any] = [list(range(70000)), {f"k{i}": i for i in range(70000)}, 1e300, -1e20]


def to_json(value: Any) -> Any:
    """A value for the node helper: bytes become {"$bytes": hex}."""
    if isinstance(value, bytes):
        return {"$bytes": value.hex()}
    if isinstance(value, list):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return value


def node_binarypack(pack_values: list[Any], unpack_hex: list[str]) -> dict[str, Any]:
    """Run the real peerjs-js-binarypack on the values and the hex strings."""
    request = {"pack": [to_json(v) for v in pack_values], "unpack": unpack_hex}
    answer: dict[str, Any] = run_node(NODE_SCRIPT, request, JS_LIBRARY, "peerjs-js-binarypack")
    return answer


# -- against the JS library ------------------------------------------------------


def test_python_packs_exactly_as_the_js_library() -> None:
    js = node_binarypack(CASES, [])["packed"]
    for value, js_hex in zip(CASES, js, strict=True):
        assert pack(value).hex() == js_hex, repr(value)[:80]


def test_python_reads_what_the_js_library_packs() -> None:
    js = node_binarypack(CASES, [])["packed"]
    for value, js_hex in zip(CASES, js, strict=True):
        assert unpack(bytes.fromhex(js_hex)) == value, repr(value)[:80]


def test_the_js_library_reads_what_python_packs() -> None:
    # The JS decoder reads ``d3`` as an unsigned number less 2**64, in doubles: a negative
    # below -2**31 comes back rounded (to 4096 near zero), whoever packed it.
    values = [v for v in CASES if not (type(v) is int and v < -(2**31))] + ONE_WAY
    extra = [2**63, 2**64 - 1, -(2**63)]  # beyond 2**53: JS reads them as rounded numbers
    js = node_binarypack([], [pack(v).hex() for v in values + extra])["unpacked"]
    for value, decoded in zip(values, js[: len(values)], strict=True):
        assert decoded == to_json(value), repr(value)[:80]
    assert [float(x) for x in js[len(values) :]] == [float(2**63), float(2**64), float(-(2**63))]


def test_a_chat_message_as_peerjs_sends_it() -> None:
    # What `conn.send("hello room")` and `conn.send({message, to})` put on the wire.
    js = node_binarypack(["hello room", {"message": "hi", "to": "all"}], [])["packed"]
    assert js == ["ba68656c6c6f20726f6f6d", "82b76d657373616765b26869b2746fb3616c6c"]
    assert unpack(bytes.fromhex(js[1])) == {"message": "hi", "to": "all"}


# -- the format, without node ------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "c0"),
        (True, "c3"),
        (-32, "e0"),
        (200, "ccc8"),
        (-100, "d09c"),
        (2**40, "d30000010000000000"),
        (2**63, "cf8000000000000000"),
        (2.0, "02"),  # an integral float is a JS integer
        (-0.0, "00"),
        (0.5, "cb3fe0000000000000"),
        ("é", "b2c3a9"),
        (b"\x01", "a101"),
        ("\ud800", "b3efbfbd"),  # a lone surrogate becomes U+FFFD, as TextEncoder does
        ("\ud83d\ude00", "b4f09f9880"),  # a surrogate pair is one character
        ((1, 2), "920102"),
    ],
)
def test_known_encodings(value: Any, expected: str) -> None:
    assert pack(value).hex() == expected


def test_decoding_forms_the_js_encoder_never_writes() -> None:
    assert unpack(bytes.fromhex("ca3fc00000")) == 1.5  # float32
    assert unpack(bytes.fromhex("cfffffffffffffffff")) == 2**64 - 1
    assert unpack(bytes.fromhex("d3ffffffffffffffff")) == -1
    assert unpack(bytes.fromhex("d90000000161")) == "a"
    assert unpack(bytes.fromhex("db0000000161")) == b"a"
    assert unpack(bytes.fromhex("dd00000001c3")) == [True]
    assert unpack(bytes.fromhex("df00000001b161c2")) == {"a": False}
    for undefined in ("c1", "d4", "d5", "d6", "d7"):  # JS undefined
        assert unpack(bytes.fromhex(undefined)) is None


@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**63), max_value=2**64 - 1)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text()
        | st.binary(),
        lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
        max_leaves=30,
    )
)
@settings(max_examples=300, deadline=None)
def test_round_trip(value: Any) -> None:
    assert unpack(pack(value)) == value


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (float("nan"), "no BinaryPack form"),
        (float("inf"), "no BinaryPack form"),
        (2**64, "64-bit range"),
        (-(2**63) - 1, "64-bit range"),
        ({1: "x"}, "map keys must be strings"),
        ({"a": {1, 2}}, "set has no BinaryPack form"),
        (object(), "object has no BinaryPack form"),
    ],
)
def test_values_without_a_form_are_refused(value: Any, problem: str) -> None:
    with pytest.raises(BinaryPackError, match=problem):
        pack(value)


def test_nesting_is_bounded_both_ways() -> None:
    deep: Any = "end"
    for _ in range(MAX_DEPTH):
        deep = [deep]
    assert unpack(pack(deep)) == deep
    with pytest.raises(BinaryPackError, match="too deeply"):
        pack([deep])
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(BinaryPackError, match="too deeply"):
        pack(loop)
    with pytest.raises(BinaryPackError, match="nested deeper"):
        unpack(b"\x91" * (MAX_DEPTH + 1) + b"\xc0")
    with pytest.raises(BinaryPackError, match="nested deeper"):
        unpack(b"\x91" * 100_000 + b"\xc0")  # no RecursionError


@pytest.mark.parametrize(
    ("hex_bytes", "problem"),
    [
        ("", "truncated"),
        ("b5616263", "truncated"),  # a 5-byte string with 3 bytes
        ("d9ffffffff61", "truncated"),  # a 4 GiB string in 6 bytes
        ("dbffffffff", "truncated"),  # a 4 GiB ArrayBuffer
        ("ddffffffff", "array of 4294967295 elements in 0 bytes"),
        ("dfffffffffc0", "map of 4294967295 elements in 1 bytes"),
        ("cd01", "truncated"),
        ("cb3ff8", "truncated"),
        ("c4", "unknown type byte 0xc4"),
        ("c9", "unknown type byte 0xc9"),
        ("c0c0", "1 bytes after the value"),
        ("b2c328", "not UTF-8"),
        ("810101", "map key is int"),
        ("8191c0c0", "map key is list"),
    ],
)
def test_malformed_bytes_are_refused(hex_bytes: str, problem: str) -> None:
    with pytest.raises(BinaryPackError, match=problem):
        unpack(bytes.fromhex(hex_bytes))


def test_input_size_is_bounded() -> None:
    with pytest.raises(BinaryPackError, match="over the 10-byte limit"):
        unpack(pack("x" * 20), max_size=10)


@given(st.binary(max_size=300))
@settings(max_examples=2000, deadline=None)
def test_random_bytes_raise_nothing_but_binarypack_error(data: bytes) -> None:
    try:
        unpack(data)
    except BinaryPackError:
        pass


@given(st.binary(max_size=300))
@settings(max_examples=1000, deadline=None)
def test_random_frames_on_a_connection_raise_nothing_but_binarypack_error(data: bytes) -> None:
    codec = BinaryPackCodec(max_message_size=CHUNK_MTU + 100)
    for frame in (data, pack({"__peerData": 1, "n": 0, "total": 2, "data": data}), data):
        try:
            codec.decode(frame)
        except BinaryPackError:
            pass


# -- peerjs chunking and close ----------------------------------------------------------


def test_a_long_message_is_chunked_and_reassembled() -> None:
    sender, receiver = BinaryPackCodec(), BinaryPackCodec()
    text = "é" * 20000  # 40 000 bytes of UTF-8
    frames = sender.encode({"message": text})
    assert len(frames) == 3 and all(len(f) <= CHUNK_MTU + 64 for f in frames)
    first = unpack(frames[0])
    assert (first["__peerData"], first["n"], first["total"]) == (1, 0, 3)
    assert isinstance(first["data"], bytes) and len(first["data"]) == CHUNK_MTU
    assert [receiver.decode(f) for f in frames[:2]] == [None, None]
    assert receiver.decode(frames[2]) == Message({"message": text})
    assert not receiver.partials
    # The next chunked message has the next id, as peerjs's chunker numbers them.
    assert unpack(sender.encode(text)[0])["__peerData"] == 2
    assert sender.encode("short") == [pack("short")]


def test_chunks_may_arrive_out_of_order_and_interleaved() -> None:
    sender, receiver = BinaryPackCodec(), BinaryPackCodec()
    a = sender.encode("a" * 40000)
    b = sender.encode(b"b" * 20000)
    results = [receiver.decode(f) for f in (a[2], b[1], a[0], b[0], a[1])]
    assert results == [None, None, None, Message(b"b" * 20000), Message("a" * 40000)]


def test_close_request() -> None:
    codec = BinaryPackCodec()
    assert codec.decode(pack({"__peerData": {"type": "close"}})) == CloseRequest()
    # A falsy __peerData is ordinary data, as in peerjs.
    assert codec.decode(pack({"__peerData": 0, "x": 1})) == Message({"__peerData": 0, "x": 1})


def test_chunked_messages_are_bounded() -> None:
    limit = CHUNK_MTU + 100
    sender, receiver = BinaryPackCodec(), BinaryPackCodec(max_message_size=limit)
    frames = sender.encode(b"x" * (limit + 1000))
    assert receiver.decode(frames[0]) is None
    with pytest.raises(BinaryPackError, match=f"over the {limit}-byte limit"):
        receiver.decode(frames[1])
    assert not receiver.partials
    # A chunk claiming a huge total keeps nothing for it.
    with pytest.raises(BinaryPackError, match="chunk total"):
        receiver.decode(pack({"__peerData": 9, "n": 0, "total": 2**40, "data": b"x"}))
    assert not receiver.partials


def test_incomplete_messages_are_bounded() -> None:
    codec = BinaryPackCodec(max_pending=2)
    for message_id in range(1, 6):
        assert (
            codec.decode(pack({"__peerData": message_id, "n": 0, "total": 2, "data": b"x"})) is None
        )
    assert sorted(codec.partials) == [4, 5] and codec.dropped == 3


@pytest.mark.parametrize(
    ("chunk", "problem"),
    [
        ({"__peerData": "a", "n": 0, "total": 1, "data": b""}, "chunk id"),
        ({"__peerData": 1, "n": 1, "total": 1, "data": b""}, "chunk number"),
        ({"__peerData": 1, "n": -1, "total": 2, "data": b""}, "chunk number"),
        ({"__peerData": 1, "n": 0, "total": 0, "data": b""}, "chunk total"),
        ({"__peerData": 1, "n": 0, "total": 1, "data": "text"}, "chunk data must be binary"),
        ({"__peerData": 1, "n": 0, "total": 1, "data": pack({"__peerData": 2})}, "itself a chunk"),
        ({"__peerData": 1, "n": 0, "total": 1, "data": b"\xc1\xc1"}, "after the value"),
    ],
)
def test_malformed_chunks_are_refused(chunk: dict[str, Any], problem: str) -> None:
    with pytest.raises(BinaryPackError, match=problem):
        BinaryPackCodec().decode(pack(chunk))


def test_a_repeated_or_contradicting_chunk_drops_its_message() -> None:
    codec = BinaryPackCodec()
    first = {"__peerData": 1, "n": 0, "total": 3, "data": b"x"}
    codec.decode(pack(first))
    with pytest.raises(BinaryPackError, match="contradicts"):
        codec.decode(pack(first))
    assert not codec.partials
    codec.decode(pack(first))
    with pytest.raises(BinaryPackError, match="contradicts"):
        codec.decode(pack({**first, "n": 1, "total": 4}))


def test_text_frames_are_refused() -> None:
    with pytest.raises(BinaryPackError, match="text message"):
        BinaryPackCodec().decode("hello")
