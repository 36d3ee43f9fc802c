"""Streaming-ins: media pulled from RTSP, RTMP, HLS or a file into a room as a forward stream."""
