"""Live captions: a real aiortc publisher speaks a sentence (espeak-ng); the room's
recogniser turns it into caption events and a WebVTT sidecar of the recording."""

from __future__ import annotations

import logging
import re
import threading
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from tessera.captions.caption import Caption
from tessera.captions.captioner import MAX_BACKLOG, Captioner
from tessera.captions.words import matched_words
from tessera.media.mediasource import FrameSource
from tessera_client import ConferenceClient
from tests.eventually import eventually
from tests.speech import SpeechTrack, espeak_available, synthesise
from tests.support import RunningServer, api

pytestmark = pytest.mark.skipif(
    not espeak_available(), reason="needs espeak-ng (scripts/test.sh installs it as root)"
)

SENTENCE = "we will meet at the office tomorrow morning to talk about the new project"
HALF = len(SENTENCE.split()) / 2
# How far a caption's times may be from when its words were spoken.
WITHIN = 3.0


def monotonic_of(epoch_ms: float) -> float:
    """A caption's time (ms since the epoch) as this process's monotonic time."""
    return epoch_ms / 1000 - (time.time() - time.monotonic())


def caption_thread(room_id: str) -> bool:
    """Whether the caption thread of room ``room_id`` runs."""
    return any(t.name == f"captions {room_id}" for t in threading.enumerate())


async def publish_speech(
    tessera: RunningServer, room: str, tmp_path: Path, user: str
) -> tuple[ConferenceClient, Any, SpeechTrack]:
    track = SpeechTrack(synthesise(SENTENCE, tmp_path / "sentence.wav"))
    client = ConferenceClient()
    await client.join(tessera.token(room=room, user=user))
    publication = await client.publish(audio=track)
    await publication.wait_ready()
    return client, publication, track


async def test_speech_becomes_caption_events_and_webvtt(
    tessera: RunningServer, tmp_path: Path
) -> None:
    status, room = await api(
        tessera,
        "POST",
        "/v1/rooms",
        {"name": "captioned", "options": {"views": [], "captions": {"enabled": True}}},
    )
    assert status == 200, room
    assert room["captions"] == {"enabled": True, "language": "en-US"}
    room_id = room["_id"]
    viewer = ConferenceClient()
    await viewer.join(tessera.token(room=room_id, user="viewer"))
    events: list[tuple[float, dict[str, Any]]] = []
    viewer.on("caption", lambda data: events.append((time.monotonic(), data)))

    speaker, publication, track = await publish_speech(tessera, room_id, tmp_path, "ada")
    status, rec = await api(
        tessera,
        "POST",
        f"/v1/rooms/{room_id}/recordings",
        {"container": "mkv", "media": {"audio": {"from": publication.id}}},
    )
    assert status == 200, rec
    recording_started = time.monotonic()
    track.speak()

    def final_words() -> list[str]:
        heard = " ".join(
            data["text"] for _, data in events if data["final"] and data["from"] == publication.id
        )
        return matched_words(SENTENCE, heard)

    await eventually(lambda: len(final_words()) >= HALF, timeout=60, what="half the words")
    spoken_start, spoken_end = track.spoken
    finals = [data for _, data in events if data["final"]]
    print(f"said: {SENTENCE!r}; heard: {[data['text'] for data in finals]}")
    # Each names its speaker; partial captions came while the sentence was spoken.
    for data in finals:
        assert data["participant"] == speaker.participant_id and data["user"] == "ada"
        assert data["language"] == "en-US"
    partials = [data for _, data in events if not data["final"]]
    assert partials and all(p["id"] in {f["id"] for f in finals} for p in partials)
    # Within 3 s of being spoken: the captions' times are the speech's.
    first, last = finals[0], finals[-1]
    assert abs(monotonic_of(first["start"]) - spoken_start) <= WITHIN, (first, spoken_start)
    assert abs(monotonic_of(last["end"]) - spoken_end) <= WITHIN, (last, spoken_end)
    # And they reached the clients while people still listen: an event (partial or final)
    # held half the sentence's words within 3 s of its end.
    half_heard = next(
        at for at, data in events if len(matched_words(SENTENCE, data["text"])) >= HALF
    )
    final_at = next(at for at, data in events if data is last)
    print(
        f"half the words {half_heard - spoken_end:+.2f} s, the final caption "
        f"{final_at - spoken_end:+.2f} s from the end of the speech"
    )
    assert half_heard - spoken_end <= WITHIN

    # The recording's WebVTT sidecar holds them, on the recording's clock.
    status, _ = await api(tessera, "DELETE", f"/v1/rooms/{room_id}/recordings/{rec['id']}")
    assert status == 200
    vtt_path = Path(rec["storage"]["file"]).with_suffix(".vtt")
    vtt = vtt_path.read_text()
    assert vtt.startswith("WEBVTT\n")
    cues = re.findall(r"(\S+) --> (\S+)\n(.+?)(?:\n\n|\n?$)", vtt, re.S)
    assert cues, vtt
    text = " ".join(re.sub(r"<[^>]+>", "", body) for _, _, body in cues)
    assert len(matched_words(SENTENCE, text)) >= HALF, vtt
    assert "<v ada>" in vtt
    start = seconds(cues[0][0])
    assert abs(start - (spoken_start - recording_started)) <= WITHIN, (vtt, spoken_start)
    await speaker.leave()
    await viewer.leave()


def seconds(stamp: str) -> float:
    hours, minutes, secs = stamp.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(secs)


async def test_captions_are_off_by_default_and_turn_on_and_off_live(
    tessera: RunningServer, tmp_path: Path
) -> None:
    status, room = await api(
        tessera, "POST", "/v1/rooms", {"name": "quiet", "options": {"views": []}}
    )
    assert status == 200 and "captions" not in room, room
    room_id = room["_id"]
    speaker, publication, track = await publish_speech(tessera, room_id, tmp_path, "ben")
    server_room = tessera.server.rooms[room_id]  # type: ignore[index]
    # No recogniser runs: the room has no captioner and no caption thread exists.
    assert server_room.captioner is None and not caption_thread(room_id)

    status, body = await api(
        tessera, "PATCH", f"/v1/rooms/{room_id}", {"options": {"captions": {"enabled": True}}}
    )
    assert status == 200 and body["captions"]["enabled"] is True, body
    captioner = server_room.captioner
    assert captioner is not None and captioner.inputs == [publication.id]
    events: list[dict[str, Any]] = []
    speaker.on("caption", events.append)
    track.speak()
    await eventually(lambda: any(e["final"] for e in events), timeout=60, what="a final caption")

    status, body = await api(
        tessera, "PATCH", f"/v1/rooms/{room_id}", {"options": {"captions": {"enabled": False}}}
    )
    assert status == 200 and "captions" not in body, body
    assert server_room.captioner is None and captioner.closed
    assert captioner.reason == "captions were turned off"
    await eventually(lambda: not caption_thread(room_id), what="the caption thread ended")
    await speaker.leave()


@pytest.mark.parametrize(
    ("captions", "message"),
    [
        ({"enabled": True, "language": "fr-FR"}, "captions.language: captions in 'fr-FR'"),
        ({"enabled": "yes"}, "captions.enabled"),
        ({"enabled": True, "model": "big"}, "captions.model"),
        (True, "captions"),
    ],
)
async def test_bad_caption_options_are_refused(
    tessera: RunningServer, captions: Any, message: str
) -> None:
    status, body = await api(
        tessera, "POST", "/v1/rooms", {"name": "bad", "options": {"captions": captions}}
    )
    assert status == 400 and message in body["error"]["message"], body
    status, room = await api(tessera, "POST", "/v1/rooms", {"name": "good"})
    status, body = await api(
        tessera, "PATCH", f"/v1/rooms/{room['_id']}", {"options": {"captions": captions}}
    )
    assert status == 400 and message in body["error"]["message"], body
    status, room = await api(tessera, "GET", f"/v1/rooms/{room['_id']}")
    assert "captions" not in room


def caption_box(frame: Any) -> bool:
    """Whether a frame shows a caption: a black box with white text in its bottom fifth."""
    luma = frame.to_ndarray(format="gray")
    height, width = luma.shape
    band = luma[int(height * 0.8) :, int(width * 0.3) : int(width * 0.7)]
    return bool((band < 40).mean() > 0.4 and (band > 200).sum() > 50)


async def test_a_view_burns_captions_in_when_it_asks(
    tessera: RunningServer, tmp_path: Path
) -> None:
    view = {
        "label": "common",
        "video": {"parameters": {"resolution": {"width": 640, "height": 360}, "framerate": 15}},
        "captions": True,
    }
    options = {"views": [view], "captions": {"enabled": True}}
    status, room = await api(tessera, "POST", "/v1/rooms", {"name": "burnt", "options": options})
    assert status == 200 and room["views"][0]["captions"] is True, room
    room_id = room["_id"]
    speaker, _, track = await publish_speech(tessera, room_id, tmp_path, "cat")
    viewer = ConferenceClient()
    await viewer.join(tessera.token(room=room_id, user="viewer"))
    subscription = await viewer.subscribe(f"{room_id}-common", audio=False)
    await subscription.wait_ready()
    video = subscription.video_track
    assert not caption_box(await video.recv())  # nobody has spoken yet
    track.speak()

    async def captioned() -> bool:
        return caption_box(await video.recv())

    await eventually(captioned, timeout=60, what="a caption in the view's picture")
    await speaker.leave()
    await viewer.leave()


class AudioOnlyStream:
    """What a Captioner takes of a ForwardStream: its id and its decoded audio."""

    def __init__(self, stream_id: str) -> None:
        self.id = stream_id
        self.audio = FrameSource("audio")

    def frame_source(self, kind: str) -> FrameSource | None:
        return self.audio if kind == "audio" else None


class Heard:
    """A room's side of a Captioner: the captions it hears."""

    def __init__(self) -> None:
        self.captions: list[Caption] = []

    def caption_heard(self, caption: Caption) -> None:
        self.captions.append(caption)


async def test_a_caption_thread_that_falls_behind_drops_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    samples = synthesise(SENTENCE, tmp_path / "sentence.wav")
    heard = Heard()
    captioner = Captioner("behind", "en-US", heard)
    try:
        await falls_behind(captioner, heard, samples, caplog)
    finally:
        captioner.close("the test ended")
    await eventually(lambda: not caption_thread("behind"), what="the caption thread ended")


async def falls_behind(
    captioner: Captioner, heard: Heard, samples: np.ndarray, caplog: pytest.LogCaptureFixture
) -> None:
    stream = AudioOnlyStream("s")
    captioner.add_input(stream, "p", "ada")  # type: ignore[arg-type]
    assert stream.audio.sink_count == 1
    # Ten seconds of audio at once: more than the thread may be behind (3 s).
    frames = 500
    padded = np.concatenate([samples, np.zeros(frames * 960 - len(samples), np.int16)])
    with caplog.at_level(logging.WARNING):
        for index in range(frames):
            chunk = padded[index * 960 : (index + 1) * 960]
            frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = 48000
            stream.audio.emit(frame)
    # At most 3 s (and what the thread took meanwhile) went through; the rest was dropped.
    assert captioner.dropped > frames - 2 * MAX_BACKLOG
    assert "captions fall behind" in caplog.text
    # What got through is recognised (the speech starts the audio), and is final once
    # the input goes: the thread recognises what was queued, then lets go of it.
    await eventually(lambda: heard.captions, 60, "a partial caption")
    captioner.remove_input("s")
    assert stream.audio.sink_count == 0
    await eventually(
        lambda: not captioner._speakers and heard.captions[-1].final,
        60,
        "the thread let go of the input, its last caption final",
    )
    finals = [c for c in heard.captions if c.final]
    assert {(c.user, c.participant, c.stream_id) for c in finals} == {("ada", "p", "s")}
    assert matched_words(SENTENCE, " ".join(c.text for c in finals))
