"""Media base: stream interfaces, packet tracks, codecs, StreamInfo helpers, aiortc reach-ins.

The bottom layer: it imports nothing of Tessera's above it, so that
`webrtc_agent`, `mixer` and `recorder` can all build on it (docs/architecture.md).
"""
