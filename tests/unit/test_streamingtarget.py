"""Where a streaming-out goes and what a PATCH changes: the pure checks, OWT's names."""

from __future__ import annotations

from typing import Any

import pytest

from tessera.media.mediasource import ParameterError
from tessera.recorder.hlsdash import dash_options, local_hls_options, pushed_hls_options
from tessera.recorder.httppush import RetryPolicy, content_type, retryable
from tessera.recorder.outputpatch import parse_output_patch
from tessera.recorder.streamingtarget import (
    Segmenting,
    check_http_url,
    check_segmenting,
    guess_protocol,
)


def test_protocol_is_guessed_as_owt_does() -> None:
    assert guess_protocol("rtmp://h/a/b") == "rtmp"
    assert guess_protocol("rtsp://h/x") == "rtsp"
    assert guess_protocol("http://h/live/x.m3u8") == "hls"
    assert guess_protocol("https://h/live/x.mpd") == "dash"
    assert guess_protocol("http://h/live/x") is None
    assert guess_protocol(None) is None and guess_protocol(5) is None


def test_segmenting_defaults_and_names() -> None:
    hls = check_segmenting("hls", None, pushed=True)
    assert hls == Segmenting("hls", "PUT", 2, 5)
    assert hls.to_json() == {"method": "PUT", "hlsTime": 2, "hlsListSize": 5}
    dash = check_segmenting("dash", {"method": "post", "dashSegDuration": 4.0}, pushed=True)
    assert dash.to_json() == {"method": "POST", "dashSegDuration": 4, "dashWindowSize": 5}
    local = check_segmenting("hls", {"hlsTime": 1}, pushed=False)
    assert local.to_json() == {"hlsTime": 1, "hlsListSize": 5}


@pytest.mark.parametrize(
    ("protocol", "parameters", "pushed", "words"),
    [
        ("hls", [], True, "parameters: an object"),
        ("hls", {"method": "GET"}, True, "parameters.method: expected PUT or POST"),
        ("hls", {"method": 1}, True, "parameters.method"),
        ("hls", {"method": "PUT"}, False, "parameters.method: only for a url"),
        ("hls", {"hlsTime": 0}, True, "parameters.hlsTime: a whole number from 1 to 60"),
        ("hls", {"hlsTime": 1.5}, True, "parameters.hlsTime"),
        ("hls", {"hlsTime": True}, True, "parameters.hlsTime"),
        ("hls", {"hlsListSize": 61}, True, "parameters.hlsListSize"),
        ("hls", {"dashWindowSize": 2}, True, "parameters.dashWindowSize: unknown for hls"),
        ("dash", {"dashSegDuration": "2"}, True, "parameters.dashSegDuration"),
    ],
)
def test_segmenting_refusals_name_the_field(
    protocol: str, parameters: Any, pushed: bool, words: str
) -> None:
    with pytest.raises(ParameterError) as refused:
        check_segmenting(protocol, parameters, pushed=pushed)
    assert words in str(refused.value)


def test_http_urls() -> None:
    target = check_http_url("HTTP://cdn.example:8080/live/show.m3u8", "hls")
    assert (target.host, target.port, target.tls, target.name, target.base) == (
        "cdn.example",
        8080,
        False,
        "show.m3u8",
        "show",
    )
    assert target.url_of("show_00001.ts") == "http://cdn.example:8080/live/show_00001.ts"
    assert check_http_url("https://cdn.example/a.b.mpd", "dash").port == 443
    assert check_http_url("https://cdn.example/a.b.mpd", "dash").base == "a.b"
    for url, words in (
        ("rtmp://h/x.m3u8", "pushed over HTTP"),
        ("http:///x.m3u8", "names no host"),
        ("http://h:0/x.m3u8", "names no host"),
        ("http://h:99999/x.m3u8", "invalid port"),
        ("http://h/x.m3u8?a=1", "query"),
        ("http://h/.m3u8", "names its playlist"),
        ("http://h/x.mpd", "names its playlist"),
        ("http://h/x y.m3u8", "spaces"),
        ("", "needs a url"),
    ):
        with pytest.raises(ParameterError) as refused:
            check_http_url(url, "hls")
        assert words in str(refused.value), url


def test_muxer_options_are_owts() -> None:
    target = check_http_url("http://h/live/show.m3u8", "hls")
    hls = pushed_hls_options(target, Segmenting("hls", "POST", 3, 4))
    assert hls["hls_segment_filename"] == "http://h/live/show_%05d.ts"
    assert (hls["hls_flags"], hls["hls_time"], hls["hls_list_size"], hls["method"]) == (
        "delete_segments",
        "3",
        "4",
        "POST",
    )
    dash = dash_options(
        check_http_url("http://h/live/show.mpd", "dash"), Segmenting("dash", "PUT", 2, 5)
    )
    assert dash["init_seg_name"] == "show-init-stream$RepresentationID$.m4s"
    assert dash["media_seg_name"] == "show-chunk-stream$RepresentationID$-$Number%05d$.m4s"
    assert (dash["seg_duration"], dash["window_size"], dash["remove_at_exit"]) == ("2", "5", "1")
    local = local_hls_options("/d/x-%05d.ts", Segmenting("hls", None, 2, 5))
    assert "method" not in local and "temp_file" in local["hls_flags"]


def test_retries_back_off_and_only_for_passing_faults() -> None:
    assert RetryPolicy().delays() == [0.5, 1.0, 2.0]
    assert RetryPolicy(attempts=6, first_delay=1, max_delay=4).delays() == [1, 2, 4, 4, 4]
    assert RetryPolicy(attempts=1).delays() == []
    assert [retryable(s) for s in (500, 503, 408, 429, 400, 403, 404)] == [
        True,
        True,
        True,
        True,
        False,
        False,
        False,
    ]
    assert content_type("a.m3u8") == "application/vnd.apple.mpegurl"
    assert content_type("a.ts") == "video/mp2t" and content_type("a.mpd") == "application/dash+xml"


def test_patch_parsing() -> None:
    patch = parse_output_patch(
        [
            {"op": "replace", "path": "/media/video/from", "value": "s2"},
            {
                "op": "replace",
                "path": "/media/video/parameters/resolution",
                "value": {"width": 640, "height": 360},
            },
            {"op": "replace", "path": "/media/video/parameters/bitrate", "value": "x0.6"},
            {"op": "replace", "path": "/media/video/parameters/framerate", "value": 15},
            {"op": "replace", "path": "/media/video/parameters/keyFrameInterval", "value": 2},
            {"op": "replace", "path": "/media/audio/status", "value": "inactive"},
        ]
    )
    assert patch.sources == {"video": "s2"}
    assert patch.parameters == {
        "resolution": {"width": 640, "height": 360},
        "bitrate": "x0.6",
        "framerate": 15,
        "keyFrameInterval": 2,
    }
    assert patch.status == {"audio": False} and patch.changes_video


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({}, "non-empty list"),
        ([], "non-empty list"),
        (["x"], "[0]: expected an object"),
        ([{"op": "replace", "path": "/media/x", "value": 1}], "[0].path: expected one of"),
        ([{"op": "remove", "path": "/media/audio/from", "value": "s"}], "[0].op"),
        ([{"op": "replace", "path": "/media/audio/from"}], "[0].value: missing"),
        ([{"op": "replace", "path": "/media/audio/from", "value": ""}], "[0].value"),
        ([{"op": "replace", "path": "/media/video/status", "value": True}], "[0].value"),
        (
            [{"op": "replace", "path": "/media/video/parameters/resolution", "value": {"w": 1}}],
            "[0].value",
        ),
        ([{"op": "replace", "path": "/media/video/parameters/bitrate", "value": "0.8"}], "x0.8"),
        ([{"op": "replace", "path": "/media/video/parameters/framerate", "value": -1}], "[0]"),
        (
            [
                {"op": "replace", "path": "/media/audio/from", "value": "s"},
                {"op": "replace", "path": "/media/audio/from", "value": "t", "x": 1},
            ],
            "[1].x: unknown field",
        ),
    ],
)
def test_patch_refusals_name_the_entry(body: Any, words: str) -> None:
    with pytest.raises(ParameterError) as refused:
        parse_output_patch(body)
    assert words in str(refused.value)
