"""Per-stream recording's pure parts: what it takes, the REST body, autoRecord, the sidecar."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tessera.conference.roomoptions import OptionsError, merge_room_options, parse_room_options
from tessera.portal.rest.errors import RestError
from tessera.portal.rest.perstreamrequest import is_per_stream, per_stream_request
from tessera.recorder.perstream import PerStreamScope
from tessera.recorder.recovery import PER_STREAM_CUT, closed_after_interruption
from tessera.recorder.timeline import Timeline


@pytest.mark.parametrize(
    ("scope", "takes"),
    [
        (PerStreamScope(), {("s1", "p1"), ("s2", "p2"), ("s3", "p1")}),
        (PerStreamScope(participant="p1"), {("s1", "p1"), ("s3", "p1")}),
        (PerStreamScope(stream="s2"), {("s2", "p2")}),
    ],
)
def test_scope_takes(scope: PerStreamScope, takes: set[tuple[str, str]]) -> None:
    streams = {("s1", "p1"), ("s2", "p2"), ("s3", "p1")}
    assert {s for s in streams if scope.takes(*s)} == takes


def test_scope_json() -> None:
    assert PerStreamScope().to_json("r") == {"room": "r"}
    assert PerStreamScope(participant="p").to_json("r") == {"participant": "p"}
    assert PerStreamScope(stream="s").to_json("r") == {"stream": "s"}


@pytest.mark.parametrize(
    ("body", "container", "participant", "stream"),
    [
        ({"perStream": {}}, "auto", None, None),
        ({"perStream": True, "container": "webm"}, "webm", None, None),
        ({"perStream": {"participant": "p1"}}, "auto", "p1", None),
        ({"perStream": {"stream": "s1"}, "container": "mkv"}, "mkv", None, "s1"),
    ],
)
def test_per_stream_bodies(
    body: dict[str, Any], container: str, participant: str | None, stream: str | None
) -> None:
    assert is_per_stream(body)
    request = per_stream_request(body)
    assert (request.container, request.participant, request.stream) == (
        container,
        participant,
        stream,
    )


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"perStream": False}, "perStream: expected"),
        ({"perStream": "room"}, "perStream: expected"),
        ({"perStream": {"participant": "a", "stream": "b"}}, "not both"),
        ({"perStream": {"user": "Ada"}}, "perStream.user"),
        ({"perStream": {"stream": 3}}, "perStream.stream"),
        ({"perStream": {"stream": "x" * 129}}, "perStream.stream"),
        ({"perStream": {}, "media": {}}, "media"),
        ({"perStream": {}, "container": "avi"}, "container"),
        ({"perStream": {}, "format": "mkv"}, "format: unknown field"),
    ],
)
def test_per_stream_refusals(body: dict[str, Any], words: str) -> None:
    with pytest.raises(RestError) as caught:
        per_stream_request(body)
    assert caught.value.status == 400 and words in str(caught.value), caught.value


def test_an_owt_body_is_not_per_stream() -> None:
    assert not is_per_stream({"media": {"audio": {"from": "s"}}})
    assert not is_per_stream([{"perStream": {}}])


def test_auto_record_keeps_true_and_takes_an_object() -> None:
    for value, composite, participants, stored in (
        (True, True, False, True),
        (False, False, False, False),
        ({"participants": True}, False, True, {"composite": False, "participants": True}),
        ({"composite": True, "participants": False}, True, False, True),
    ):
        options = parse_room_options({"autoRecord": value})
        assert options.auto_record.composite is composite
        assert options.auto_record.participants is participants
        assert options.to_json()["autoRecord"] == stored
        assert parse_room_options(options.to_json()) == options
    # A PATCH of the object form replaces the flag (both keys as given; missing: false).
    merged = merge_room_options(parse_room_options({"autoRecord": True}), {"autoRecord": {}})
    assert merged.to_json()["autoRecord"] is False
    for bad in ("yes", 1, {"participants": "true"}, {"everyone": True}):
        with pytest.raises(OptionsError, match="autoRecord"):
            parse_room_options({"autoRecord": bad})


def test_timeline_sorts_events_and_writes_extra_fields(tmp_path: Path) -> None:
    timeline = Timeline("rec", "room", origin=100.0, clock="from the start")
    timeline.add("file-stop", at=105.0, stream="s")
    timeline.add("file-start", at=101.5, stream="s")
    timeline.add("before", at=99.0)
    path = tmp_path / "t.json"
    timeline.write(path, {"files": [{"file": "a.mkv"}]})
    data = json.loads(path.read_text())
    assert [(e["t"], e["type"]) for e in data["events"]] == [
        (0.0, "before"),
        (1.5, "file-start"),
        (5.0, "file-stop"),
    ]
    assert data["clock"] == "from the start" and data["files"] == [{"file": "a.mkv"}]


def test_an_interrupted_per_stream_recording_is_closed_from_its_sidecar(tmp_path: Path) -> None:
    sidecar = tmp_path / "g.timeline.json"
    files = [
        {"recording": "a", "file": "a.mkv", "offset": 0.1, "duration": 3.0, "state": "recording"},
        {"recording": "b", "file": "../../b.mkv", "offset": 2.0, "duration": 1, "state": "stopped"},
        "not a file",
    ]
    sidecar.write_text(json.dumps({"events": [], "files": files}))
    info = {
        "id": "g",
        "perStream": {"room": "r"},
        "state": "recording",
        "storage": {"file": str(sidecar)},
    }
    closed = closed_after_interruption(info)
    assert closed["state"] == "stopped" and closed["reason"] == PER_STREAM_CUT
    # Nothing playable in either (no such files): failed, 0 s; no path leaves the folder.
    assert [(f["recording"], f["state"], f["duration"]) for f in closed["files"]] == [
        ("a", "failed", 0.0),
        ("b", "stopped", 0.0),
    ]
    missing = closed_after_interruption({**info, "storage": {"file": str(tmp_path / "no")}})
    assert missing["state"] == "stopped" and missing["files"] == []
