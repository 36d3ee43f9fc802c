#!/usr/bin/env bash
# Install what the tests need into .venv, then lint, type-check and run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
# System tools the tests drive: FFmpeg's command line is the RTMP receiver of the
# streaming-out tests; Debian's Chromium runs the browser tests; redis-server backs the
# cluster tests (each test starts its own). Installed where missing when we may (root with
# apt-get); elsewhere those tests skip and say how to enable them.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=()
  command -v ffmpeg >/dev/null || missing+=(ffmpeg)
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v curl >/dev/null || missing+=(curl)  # the README's examples (test_readme.py)
  command -v tc >/dev/null || missing+=(iproute2)  # tests/netlab.py: namespaces, tbf
  # Name labels in a view (mixer/textrender.py): Latin, Arabic, CJK and colour emoji fonts,
  # and FriBiDi, which Pillow's libraqm loads for right-to-left text.
  [ -f /usr/share/fonts/truetype/noto/NotoSans-Regular.ttf ] || missing+=(fonts-noto-core)
  [ -f /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ] || missing+=(fonts-noto-cjk)
  [ -f /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] || missing+=(fonts-noto-color-emoji)
  ldconfig -p | grep libfribidi.so.0 >/dev/null || missing+=(libfribidi0)
  command -v espeak-ng >/dev/null || missing+=(espeak-ng)  # speech for the caption tests
  # GStreamer's RTSP server, run by the system Python, is the RTSP source of the
  # streaming-in tests (tests/rtsp_server.py: VP8 and Opus).
  /usr/bin/python3 -c "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0')
from gi.repository import Gst; Gst.init(None); assert Gst.ElementFactory.find('vp8enc')" 2>/dev/null ||
    missing+=(python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good)
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi
bash scripts/web.sh
bash scripts/venv.sh -e '.[test]' -e ./clients/python
export PATH="$PWD/.venv/bin:$PATH"

echo "== ruff"
ruff check .
ruff format --check .
echo "== layers (import contracts in pyproject.toml; docs/architecture.md)"
lint-imports --no-cache --no-logo
echo "== mypy"
mypy -p tessera.portal -p tessera.conference -p tessera.cluster -p tessera.webrtc_agent \
  -p tessera.mixer -p tessera.recorder -p tessera.ingest -p tessera.config -p tessera.media -p tessera.captions
mypy bench
mypy clients/python/tessera_client
echo "== pytest"
# The slowest tests are listed at the end: the whole suite must stay under 15 minutes.
pytest -q -p no:cacheprovider --durations=25 tests clients/python/tests "$@"
