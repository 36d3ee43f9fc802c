"""Hand raises and reactions as text messages: what is sent, and what is understood."""

from __future__ import annotations

import json

import pytest

from tessera_client import (
    REACTIONS,
    HandSignal,
    ReactionSignal,
    SignalError,
    encode_hand,
    encode_reaction,
    parse_signal,
)


def test_a_hand_goes_both_ways() -> None:
    for raised in (True, False):
        message = encode_hand(raised)
        assert parse_signal(message) == HandSignal(raised)
        body = json.loads(message)
        assert body["tessera"] == "hand" and body["raised"] is raised
        assert isinstance(body["text"], str) and body["text"]  # what an OWT client shows


def test_every_reaction_goes_both_ways() -> None:
    for emoji in REACTIONS:
        message = encode_reaction(emoji)
        assert parse_signal(message) == ReactionSignal(emoji)
        assert emoji in message  # not escaped: readable as plain text


def test_an_unknown_reaction_is_not_sent() -> None:
    with pytest.raises(SignalError, match="Unknown reaction"):
        encode_reaction("<script>")


@pytest.mark.parametrize(
    "message",
    ["hello", "", "{not json", '{"a": 1}', "[1, 2]", '"{"', "{}", '  {"text": "x"}'],
)
def test_plain_text_is_no_signal(message: str) -> None:
    assert parse_signal(message) is None


def test_a_message_that_is_not_a_string_is_no_signal() -> None:
    assert parse_signal({"tessera": "hand", "raised": True}) is None
    assert parse_signal(None) is None


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"tessera": "hand"}, "'raised'"),
        ({"tessera": "hand", "raised": "yes"}, "'raised'"),
        ({"tessera": "hand", "raised": 1}, "'raised'"),
        ({"tessera": "reaction", "emoji": "💩"}, "Unknown reaction"),
        ({"tessera": "reaction"}, "Unknown reaction"),
        ({"tessera": "wave"}, 'Unknown signal "wave"'),
        ({"tessera": ["hand"]}, "Unknown signal"),
    ],
)
def test_a_broken_signal_is_named(body: dict[str, object], problem: str) -> None:
    with pytest.raises(SignalError, match=problem):
        parse_signal(json.dumps(body))


def test_keys_a_later_version_adds_are_ignored() -> None:
    message = json.dumps({"tessera": "hand", "raised": True, "since": 12, "text": "x"})
    assert parse_signal(message) == HandSignal(True)
