"""The options of FFmpeg's `hls` and `dash` muxers for a streaming-out, as OWT sets them (pure).

OWT's `LiveStreamOut::getHeaderOpt` (checked in its source):

- HLS: segments `<playlist name>_%05d.ts` next to the playlist,
  `hls_flags=delete_segments` (segments that left the list are deleted: over
  HTTP, a DELETE request), `hls_time`, `hls_list_size`, and `method` for an
  `http(s)://` url. The `hls` muxer cuts a segment at the first video keyframe
  after `hls_time`, so a streaming-out asks its source for a keyframe every
  `hls_time` seconds.
- DASH: `<name>-init-stream$RepresentationID$.m4s` and
  `<name>-chunk-stream$RepresentationID$-$Number%05d$.m4s`, fragmented MP4
  segments, `use_template`, `use_timeline`, `seg_duration`, `window_size`,
  `extra_window_size` (segments kept after leaving the manifest before they
  are deleted), `remove_at_exit` (everything is deleted when the output
  stops), and `method`. OWT also sets `streaming=1` (each frame its own
  fragment, for FFmpeg's chunked HTTP upload); Tessera uploads whole files
  (see `httppush.py`), so it leaves streaming off: each segment is then on
  the server before the manifest that lists it.

Locally written HLS (no url) keeps Tessera's own names `<id>-%05d.ts`, and
`temp_file` (a web server never serves half a file) and `independent_segments`.
"""

from __future__ import annotations

from .streamingtarget import HttpTarget, Segmenting

LOCAL_HLS_FLAGS = "delete_segments+independent_segments+temp_file"


def pushed_hls_options(target: HttpTarget, segmenting: Segmenting) -> dict[str, str]:
    """Options of the `hls` muxer writing to `target.url` through `io_open`."""
    return {
        "hls_segment_filename": target.url_of(f"{target.base}_%05d.ts"),
        "hls_flags": "delete_segments",
        "hls_time": str(segmenting.duration),
        "hls_list_size": str(segmenting.window),
        "hls_segment_type": "mpegts",
        "method": segmenting.method or "PUT",
    }


def local_hls_options(segment_pattern: str, segmenting: Segmenting) -> dict[str, str]:
    """Options of the `hls` muxer writing files that the portal serves."""
    return {
        "hls_segment_filename": segment_pattern,
        "hls_flags": LOCAL_HLS_FLAGS,
        "hls_time": str(segmenting.duration),
        "hls_list_size": str(segmenting.window),
        "hls_segment_type": "mpegts",
    }


def dash_options(target: HttpTarget, segmenting: Segmenting) -> dict[str, str]:
    """Options of the `dash` muxer writing to `target.url` through `io_open`."""
    base = target.base
    return {
        "init_seg_name": f"{base}-init-stream$RepresentationID$.m4s",
        "media_seg_name": f"{base}-chunk-stream$RepresentationID$-$Number%05d$.m4s",
        "streaming": "0",
        "use_template": "1",
        "use_timeline": "1",
        "dash_segment_type": "mp4",
        "remove_at_exit": "1",
        "seg_duration": str(segmenting.duration),
        "window_size": str(segmenting.window),
        "extra_window_size": str(segmenting.window),
        "method": segmenting.method or "PUT",
    }
