#!/usr/bin/env bash
# Builds the ComfyUI test server Collagen's integration tests run against (tests/inference/backends/).
# ComfyUI is GPL-3.0 test infrastructure only: its source stays in ../shared/comfyui (read-only) and is copied,
# with its own virtual environment beside it, into a writable cache folder. Nothing of it enters Collagen.
# Cached: a finished build (marked by .collagen-ready) is reused, so CI pays the ~4.5 min once per machine.
# Prints the cache folder on success.
set -euo pipefail
repo_root="$(cd "$(dirname "$0")/.." && pwd)"
source_tree="${COLLAGEN_COMFYUI_SOURCE:-$repo_root/../shared/comfyui}"
cache_root="${COLLAGEN_COMFYUI_CACHE:-$HOME/.cache/collagen-ci/comfyui-0.3.64}"
ready_mark="$cache_root/.collagen-ready"

if [[ -f "$ready_mark" ]]; then
    echo "$cache_root"
    exit 0
fi
if [[ ! -f "$source_tree/main.py" ]]; then
    echo "comfyui_env: no ComfyUI source at $source_tree; the ComfyUI integration tests will skip." >&2
    exit 1
fi

mkdir -p "$cache_root"
# The server writes models/, input/, output/, user/ and a database into its own tree, hence the copy.
rm -rf "$cache_root/server"
cp -r "$source_tree" "$cache_root/server"
python3 -m venv "$cache_root/venv"
# PyPI's torch build with the matching torchvision (torchvision is a hard ComfyUI dependency); it runs on a CPU.
"$cache_root/venv/bin/pip" install --quiet torch==2.14.1 torchvision==0.29.1
"$cache_root/venv/bin/pip" install --quiet -r "$cache_root/server/requirements.txt"
# frontend_management imports requests, which requirements.txt does not list.
"$cache_root/venv/bin/pip" install --quiet requests
touch "$ready_mark"
echo "$cache_root"
