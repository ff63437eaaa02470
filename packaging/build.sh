#!/usr/bin/env bash
# Build the frozen one-folder Collagen: dist/collagen/collagen (+ dist/collagen/_internal).
#   packaging/build.sh            build with the project's .venv (pip install -e ".[build]" first)
#   PYTHON=/path/python packaging/build.sh
# The build log goes to build/pyinstaller.log; the elapsed time is printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
mkdir -p build
started=$(date +%s)
# No network during the build either: nothing in it may need a download.
HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 QT_QPA_PLATFORM=offscreen \
    "$PYTHON" -m PyInstaller --noconfirm --clean --log-level WARN build.spec >build/pyinstaller.log 2>&1 || {
    tail -40 build/pyinstaller.log >&2
    echo "build failed; full log in build/pyinstaller.log" >&2
    exit 1
}
echo "built dist/collagen in $(( $(date +%s) - started ))s ($(du -sh dist/collagen | cut -f1))"
