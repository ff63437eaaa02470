#!/usr/bin/env bash
# Every GPU case of bench.gpu in one device session (< 8 min on an H100/H200-class GPU): SD1.5 at
# 512² and SDXL at 1024², 30 steps, eager vs stock, previews, regions, channels_last + fused QKV and
# torch.compile with the size-change check. 3 measured pairs per case (the eager one has a discarded
# warm-up pair); cases that would start after 420 s are skipped and listed, so the run ends in time
# with what it measured. Writes bench/out/gpu_results.json and bench/out/gpu_results.md (a markdown
# table for bench/RESULTS.md) after each family.
#
#     bash bench/gpu_all.sh            # from the repository root, with the project's environment
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
exec "$PYTHON" -m bench.gpu --families sd15,sdxl --pairs 3 --warmup 0 --budget-s "${BUDGET_S:-420}" \
    --json bench/out/gpu_results.json --markdown bench/out/gpu_results.md "$@"
