"""What the remote path costs on top of the ComfyUI server's own work (issue 20, item 5).

    python -m bench.comfyui [--sizes 512,1024] [--steps 2] [--rounds 2]

Starts a real ComfyUI server (the test environment of scripts/comfyui_env.sh, the full-size
random-weight SD1.5 checkpoint of tests/inference/backends/comfyui_server.py) on 127.0.0.1 and
runs inpaint jobs (an uploaded canvas and mask, a pasted-back result) through the same functions
`ComfyUIBackend.run_job` calls, timing each phase:

    build     prepare_job (inpaint crop/blur/grid mask) + build_graph (incl. PNG-encoding uploads)
    upload    POST /upload/image of the canvas and the mask
    queue     POST /prompt
    wait      websocket events until the prompt is done (includes the server's execution)
    download  GET /history + GET /view of the result PNG
    decode    PNG decode + Collagen's paste-back

The server's own execution time is the span between its `execution_start` and
`execution_success` timestamps in /history; overhead = wall - execution. Each round uses a new
seed so the server's cache never answers instead of executing. The first job (the checkpoint
load) is a warm-up and not counted.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np

from inference.api import GenerationRequest
from inference.backends.comfyui.backend import (
    ComfyUIBackend,
    JobProgress,
    PromptWatch,
    finish_image,
    prepare_job,
)
from inference.backends.comfyui.client import decode_png
from inference.backends.comfyui.graph import build_graph
from tests.inference.backends.comfyui_server import (
    CACHE_ROOT,
    comfyui_environment,
    start_server,
    write_test_models,
)

MODEL = "collagen-random-sd15"
PHASES = ("build", "upload", "queue", "wait", "download", "decode")


def inpaint_request(size: int, steps: int, seed: int) -> GenerationRequest:
    rng = np.random.default_rng(size)
    image = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    mask = np.zeros((size, size), np.float32)
    mask[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 1.0
    return GenerationRequest(mode="inpaint", model=MODEL, prompt="a lighthouse", width=size, height=size,
                             steps=steps, cfg=1.0, seed=seed, sampler="Euler", init_image=image, mask=mask,
                             mask_blur=4, strength=1.0, preview="none")


def server_execution_s(history: dict) -> float:
    stamps = {name: data.get("timestamp") for name, data in history.get("status", {}).get("messages", [])}
    return (stamps["execution_success"] - stamps["execution_start"]) / 1000.0


def timed_job(backend: ComfyUIBackend, request: GenerationRequest) -> dict:
    times: dict[str, float] = {}
    started = mark = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        times[name] = now - mark
        mark = now

    job = prepare_job(request, lambda event: None)
    models = backend.models_for(request, job.loras)
    plan = build_graph(request, job.inputs, models, seed=request.seed, sampler=job.sampler)
    lap("build")
    client_id = uuid.uuid4().hex
    socket = backend.client.open_socket(client_id)
    try:
        for upload in plan.uploads:
            backend.client.upload(upload)
        lap("upload")
        prompt_id = backend.client.queue_prompt(plan.graph, client_id)
        lap("queue")
        progress = JobProgress()
        progress.total = plan.total_steps
        PromptWatch(backend.client, socket, plan, prompt_id, lambda event: None, threading.Event(), progress).wait()
        lap("wait")
    finally:
        socket.close()
    history = backend.client.history(prompt_id)
    while not history.get("status"):
        time.sleep(0.05)
        history = backend.client.history(prompt_id)
    data = backend.client.view(history["outputs"][plan.output_node]["images"][0])
    lap("download")
    finish_image(job, decode_png(data, "a result"))
    lap("decode")
    times["wall"] = time.perf_counter() - started
    times["execution"] = server_execution_s(history)
    times["upload_bytes"] = sum(len(upload.data) for upload in plan.uploads)
    times["result_bytes"] = len(data)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.comfyui")
    parser.add_argument("--sizes", default="512,1024")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("bench/out/comfyui.json"))
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",")]

    environment = comfyui_environment()
    models = write_test_models(CACHE_ROOT / "test-models")
    with tempfile.TemporaryDirectory(prefix="collagen-bench-comfyui-") as base:
        server = start_server(environment, Path(base), models)
        try:
            backend = ComfyUIBackend(server.url, timeout=600)
            timed_job(backend, inpaint_request(64, 1, seed=1))  # warm-up: loads the checkpoint
            results = {}
            for size in sizes:
                rounds = [timed_job(backend, inpaint_request(size, args.steps, seed=1000 + size + index))
                          for index in range(args.rounds)]
                results[size] = rounds
                report(size, rounds)
        finally:
            server.kill()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": platform.platform(), "steps": args.steps, "results": results},
                                   indent=2))
    return 0


def report(size: int, rounds: list[dict]) -> None:
    def median(key: str) -> float:
        return float(np.median([r[key] for r in rounds]))

    overhead = median("wall") - median("execution")
    print(f"{size}²: wall {median('wall'):.2f} s, server execution {median('execution'):.2f} s, "
          f"overhead {overhead:.3f} s ({overhead / median('execution'):.2%}); "
          + ", ".join(f"{phase} {median(phase) * 1000:.0f} ms" for phase in PHASES)
          + f"; upload {median('upload_bytes') / 1e6:.2f} MB, result {median('result_bytes') / 1e6:.2f} MB",
          flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
