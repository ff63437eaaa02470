#!/usr/bin/env bash
# Start the frozen editor on a virtual X screen, wait for its main window, take a screenshot, stop it.
#   packaging/screenshot.sh [OUT.png] [APP]   (default docs/screenshots/frozen-main-window.png, dist/collagen/collagen)
# Needs xvfb-run, xwininfo (x11-utils) and import (imagemagick): apt-get install -y xvfb x11-utils imagemagick
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-docs/screenshots/frozen-main-window.png}"
APP="${2:-dist/collagen/collagen}"
WAIT_S="${WAIT_S:-180}"
for tool in xvfb-run xwininfo import; do
    command -v "$tool" >/dev/null || { echo "screenshot.sh needs $tool (see the header of this script)" >&2; exit 1; }
done
mkdir -p "$(dirname "$OUT")"
OUT="$(cd "$(dirname "$OUT")" && pwd)/$(basename "$OUT")"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# Inside the X session: start the app with no network and a fresh home, wait until a top-level
# window named Collagen is mapped and has painted, then grab the whole screen.
xvfb-run -a -s "-screen 0 1400x900x24" bash -c '
    app="$1"; out="$2"; wait_s="$3"; home="$4"
    mkdir -p "$home"
    packaging/no_network.sh env -i PATH=/usr/bin:/bin HOME="$home" LANG=C.UTF-8 DISPLAY="$DISPLAY" \
        XAUTHORITY="${XAUTHORITY:-}" QT_QPA_PLATFORM=xcb "$app" >"$home/app.log" 2>&1 &
    pid=$!
    for _ in $(seq "$wait_s"); do
        if xwininfo -root -tree | grep -q "Collagen\""; then break; fi
        kill -0 "$pid" 2>/dev/null || { echo "the app exited before showing a window:" >&2; cat "$home/app.log" >&2; exit 1; }
        sleep 1
    done
    xwininfo -root -tree | grep -q "Collagen\"" || { echo "no Collagen window after ${wait_s}s" >&2; kill "$pid"; exit 1; }
    sleep 3  # let the first paint and the theme settle
    import -window root "$out"
    kill "$pid"; wait "$pid" 2>/dev/null || true
' screenshot "$APP" "$OUT" "$WAIT_S" "$scratch/home"
echo "wrote $OUT"
