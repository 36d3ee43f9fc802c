"""Client-Portal request validation (pure): what OWT's clients send is accepted, the rest named."""

from __future__ import annotations

import pytest

from tessera.portal import messages as m

TRACKS = {"tracks": [{"type": "video", "mid": "0", "from": "s1"}]}


@pytest.mark.parametrize(
    "transport",
    [
        {"type": "webrtc", "id": ""},  # pyowt's first request
        {"type": "webrtc", "id": None},
        {"type": "webrtc"},  # the JS SDK 5.1's first request (id undefined)
    ],
)
def test_a_missing_null_or_empty_transport_id_means_a_new_transport(
    transport: dict[str, object],
) -> None:
    request = m.parse(m.Subscribe, {"media": TRACKS, "transport": transport})
    assert request.transport.id is None


def test_no_transport_at_all_means_a_new_transport() -> None:
    assert m.parse(m.Subscribe, {"media": TRACKS}).transport.id is None


def test_a_transport_id_is_kept() -> None:
    request = m.parse(m.Subscribe, {"media": TRACKS, "transport": {"type": "webrtc", "id": "t1"}})
    assert request.transport.id == "t1"


@pytest.mark.parametrize(
    ("transport", "message"),
    [
        ({"type": "webrtc", "id": 5}, "transport.id: Input should be a valid string"),
        ({"type": "webrtc", "id": "x" * 129}, "transport.id: String should have at most 128"),
        ({"type": "quic"}, "transport.type: Input should be 'webrtc'"),
    ],
)
def test_a_bad_transport_is_named(transport: dict[str, object], message: str) -> None:
    with pytest.raises(m.RequestError) as info:
        m.parse(m.Subscribe, {"media": TRACKS, "transport": transport})
    assert str(info.value).startswith(f"Invalid subscribe request: {message}")


@pytest.mark.parametrize("source", ["mic", "camera", "screen-cast", "raw-file", "encoded-file"])
def test_owt_track_sources_are_accepted(source: str) -> None:
    media = {"tracks": [{"type": "video", "mid": "0", "source": source}]}
    assert m.parse(m.Publish, {"media": media}).media.tracks[0].source == source


def test_an_unknown_track_source_is_named() -> None:
    media = {"tracks": [{"type": "video", "mid": "0", "source": "webcam"}]}
    with pytest.raises(m.RequestError) as info:
        m.parse(m.Publish, {"media": media})
    assert str(info.value).startswith("Invalid publish request: media.tracks.0.source: Input")
