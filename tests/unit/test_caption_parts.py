"""The pure parts of live captions: words, segmenting, WebVTT, the room option."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tessera.captions.caption import Caption
from tessera.captions.segmenter import Segmenter, Step, wrap_lines
from tessera.captions.words import matched_words, normalised, spoken_words
from tessera.conference.roomoptions import OptionsError, merge_room_options, parse_room_options
from tessera.recorder.webvtt import CaptionTrack, Cue, escape, timestamp, to_webvtt


def test_spoken_words_drop_markers_and_name_variants_plainly() -> None:
    raw = ["<s>", "we", "<sil>", "will(2)", "[NOISE]", "meet", "++UH++", "the(3)", "</s>"]
    assert spoken_words(raw) == ["we", "will", "meet", "the"]
    assert spoken_words([]) == []


def test_normalised_words_ignore_case_and_punctuation() -> None:
    assert normalised("We'll meet, at the OFFICE!") == ["we'll", "meet", "at", "the", "office"]
    assert normalised("  ... ") == []


def test_matched_words_count_in_order_and_once() -> None:
    said = "we will meet at the office tomorrow"
    assert matched_words(said, "we will meet at the office tomorrow") == said.split()
    assert matched_words(said, "we will reject the office tomorrow") == [
        "we",
        "will",
        "the",
        "office",
        "tomorrow",
    ]
    # A word heard twice counts once; words out of order count as a longest common run.
    assert matched_words("the cat", "the the the cat cat") == ["the", "cat"]
    assert matched_words("a b c", "c b a") in (["a"], ["b"], ["c"])
    assert matched_words(said, "") == []


def test_segmenter_sends_partials_at_its_pace_and_cuts_long_utterances() -> None:
    segmenter = Segmenter(partial_every=0.5, max_utterance=6.0)
    segmenter.start()
    assert segmenter.step(0.2) is Step.NOTHING
    assert segmenter.step(0.5) is Step.PARTIAL
    assert segmenter.step(0.9) is Step.NOTHING
    assert segmenter.step(1.0) is Step.PARTIAL
    assert segmenter.step(6.0) is Step.CUT
    segmenter.start()  # a new utterance starts its own count
    assert segmenter.step(0.5) is Step.PARTIAL


def test_wrap_lines_breaks_between_words_and_keeps_the_latest() -> None:
    text = "we will meet at the office tomorrow morning"
    assert wrap_lines(text, 16) == ["we will meet at", "the office", "tomorrow morning"]
    assert wrap_lines(text, 16, max_lines=2) == ["the office", "tomorrow morning"]
    assert wrap_lines("supercalifragilistic", 5) == ["super"]
    assert wrap_lines("", 10) == []
    assert wrap_lines(text, 100, max_lines=0) == []
    with pytest.raises(ValueError):
        wrap_lines(text, 0)


def test_webvtt_timestamps() -> None:
    assert timestamp(0) == "00:00:00.000"
    assert timestamp(1.2345) == "00:00:01.234" or timestamp(1.2345) == "00:00:01.235"
    assert timestamp(3723.5) == "01:02:03.500"
    assert timestamp(-2) == "00:00:00.000"


def test_webvtt_cues_on_the_recording_clock_with_speakers_and_escapes() -> None:
    origin = 100.0
    cues = [
        Cue(103.0, 105.5, "Bob <admin>", "second & <last>"),
        Cue(101.0, 102.25, "ada", "we will meet at the office tomorrow morning to talk about it"),
        Cue(90.0, 91.0, "", "before the recording started"),
        Cue(106.0, 105.0, "ada", "ends before it starts"),
        Cue(107.0, 108.0, "ada", "   "),
    ]
    text = to_webvtt(cues, origin)
    assert text.startswith("WEBVTT\n\n")
    blocks = [b.strip() for b in text.split("\n\n")[1:] if b.strip()]
    assert blocks[0] == "1\n00:00:00.000 --> 00:00:00.000\nbefore the recording started"
    assert blocks[1] == (
        "2\n00:00:01.000 --> 00:00:02.250\n"
        "<v ada>we will meet at the office tomorrow\nmorning to talk about it"
    )
    assert (
        blocks[2]
        == "3\n00:00:03.000 --> 00:00:05.500\n<v Bob &lt;admin&gt;>second &amp; &lt;last&gt;"
    )
    assert blocks[3].endswith("00:00:06.000 --> 00:00:06.000\n<v ada>ends before it starts")
    assert len(blocks) == 4  # the empty cue is left out
    assert escape("a<b>&c") == "a&lt;b&gt;&amp;c"
    # Nothing recorded yet: every cue at 0.
    assert "00:00:00.000 --> 00:00:00.000\n<v ada>we will" in to_webvtt(cues[1:2], None)


def test_caption_track_keeps_final_captions_of_room_events(tmp_path: Path) -> None:
    now = time.monotonic()
    event = Caption("s-0", "s", "p", "ada", "en-US", "hello there", True, now, now + 1.5).to_event()
    track = CaptionTrack()
    assert track.add_event(event)
    assert not track.add_event({**event, "final": False})
    assert not track.add_event({**event, "text": "  "})
    assert not track.add_event({**event, "start": "soon"})
    assert not track.add_event("not an event")
    (cue,) = track.cues
    assert abs(cue.start - now) < 0.01 and abs(cue.end - (now + 1.5)) < 0.01
    path = tmp_path / "r.vtt"
    track.write(path, origin=now - 2)
    assert path.read_text() == "WEBVTT\n\n1\n00:00:02.000 --> 00:00:03.500\n<v ada>hello there\n"
    assert not (tmp_path / "r.vtt.partial").exists()


def test_caption_event_shape() -> None:
    now = time.monotonic()
    event = Caption("s-3", "s", "p", "ada", "en-US", "hi", False, now, now + 0.5).to_event()
    assert set(event) == {
        "id",
        "from",
        "participant",
        "user",
        "language",
        "text",
        "final",
        "start",
        "end",
    }
    assert event["end"] - event["start"] == 500
    assert abs(event["start"] / 1000 - time.time()) < 5


def test_captions_room_option_defaults_validates_and_stays_out_of_the_json_while_off() -> None:
    options = parse_room_options({})
    assert options.captions.enabled is False and options.captions.language == "en-US"
    assert "captions" not in options.to_json()
    on = merge_room_options(options, {"captions": {"enabled": True}})
    assert on.to_json()["captions"] == {"enabled": True, "language": "en-US"}
    off = merge_room_options(on, {"captions": {"enabled": False}})
    assert "captions" not in off.to_json()
    for bad, message in (
        ({"language": "de-DE"}, "captions.language: captions in 'de-DE' are not available"),
        ({"enabled": 1}, "captions.enabled"),
        ({"enabled": True, "partials": False}, "captions.partials"),
        ("on", "captions"),
    ):
        with pytest.raises(OptionsError, match=message.replace(".", r"\.")):
            parse_room_options({"captions": bad})
