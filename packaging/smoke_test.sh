#!/usr/bin/env bash
# Build the frozen app, then run its self-test the way a user's offline machine would:
# no network namespace (packaging/no_network.sh), offscreen Qt, an empty home, from another folder.
#   packaging/smoke_test.sh                       build, report the bundle, self-test
#   packaging/smoke_test.sh --no-build            self-test the existing dist/collagen
#   packaging/smoke_test.sh --no-build --samples  also render every bundled sample project (2 steps)
#                                                 and the edit sample with each tiny edit family
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
PYTHON="${PYTHON:-.venv/bin/python}"
build=1 samples=0
for arg in "$@"; do
    case "$arg" in
        --no-build) build=0 ;;
        --samples) samples=1 ;;
        *) echo "usage: $0 [--no-build] [--samples]" >&2; exit 2 ;;
    esac
done

if [ "$build" = 1 ]; then
    packaging/build.sh
fi
APP="$REPO/dist/collagen/collagen"
[ -x "$APP" ] || { echo "no frozen app at $APP; run packaging/build.sh" >&2; exit 1; }

"$PYTHON" packaging/bundle_report.py dist/collagen

# The namespace must really be offline, or the self-test proves nothing.
packaging/no_network.sh "$PYTHON" -c '
import socket, sys
probe = socket.socket()
probe.settimeout(3)
sys.exit(0 if probe.connect_ex(("1.1.1.1", 443)) != 0 else "the network namespace can still reach the internet")
'

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/home"
cd "$scratch"

offline() {
    # env -i: nothing from this shell (PYTHONPATH, HF_HOME, COLLAGEN_MODELS, a venv) helps the bundle.
    "$REPO/packaging/no_network.sh" env -i PATH=/usr/bin:/bin HOME="$scratch/home" LANG=C.UTF-8 \
        QT_QPA_PLATFORM=offscreen XDG_RUNTIME_DIR="$scratch" "$APP" "$@"
}

started=$(date +%s)
offline --self-test
echo "frozen self-test passed offline in $(( $(date +%s) - started ))s"

if [ "$samples" = 1 ]; then
    # The samples inside the bundle, so this also proves they were shipped.
    bundled="$REPO/dist/collagen/_internal/resources/samples"
    for project in "$bundled"/*.ora; do
        name=$(basename "$project" .ora)
        offline render "$project" --out "$scratch/$name.png" --steps 2
        echo "ok   render $name"
    done
    for model in builtin:tiny-kontext builtin:tiny-qwen-edit builtin:tiny-qwen-edit-plus; do
        offline render "$bundled/edit.ora" --out "$scratch/edit-${model#builtin:}.png" --steps 2 --model "$model"
        echo "ok   render edit with $model"
    done
    echo "frozen sample renders passed offline in $(( $(date +%s) - started ))s in all"
fi
