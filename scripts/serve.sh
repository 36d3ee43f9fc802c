#!/usr/bin/env bash
# Install Tessera into .venv (editable: it serves web/ and node_modules/ from this checkout)
# and the page's browser packages, then run it on the embedded default (127.0.0.1:8080).
# Extra arguments go to `tessera serve` (for example --port 9000).
set -euo pipefail
cd "$(dirname "$0")/.."
# The fonts of the views' name labels (Latin, Arabic, CJK, colour emoji) and FriBiDi for
# right-to-left names, installed where missing when we may (root with apt-get); without
# them a label shows only what the remaining fonts cover.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=()
  [ -f /usr/share/fonts/truetype/noto/NotoSans-Regular.ttf ] || missing+=(fonts-noto-core)
  [ -f /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ] || missing+=(fonts-noto-cjk)
  [ -f /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] || missing+=(fonts-noto-color-emoji)
  ldconfig -p | grep libfribidi.so.0 >/dev/null || missing+=(libfribidi0)
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi
bash scripts/venv.sh -e . ./clients/python
bash scripts/web.sh
exec .venv/bin/tessera serve "$@"
