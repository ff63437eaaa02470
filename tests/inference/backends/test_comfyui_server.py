"""Issue 20 acceptance: Collagen's ComfyUI backend against a REAL ComfyUI 0.3.64 server (no mock).

Two servers start once for the module (127.0.0.1, free ports, their own folders), both with a
full-size random-weight SD1.5 checkpoint and a kohya LoRA for it. Images are 64 px and runs 1-3
steps at CFG 1 (ComfyUI then skips the unconditional pass): a full-size UNet on a shared CPU is
slow, and what is tested is the remote path, not picture quality. The last test kills a server.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from inference.api import (
    Cancelled,
    CompositePiece,
    Failed,
    Finished,
    GenerationRequest,
    LoraSpec,
    Notice,
    Preview,
    Progress,
    RegionSpec,
)
from inference.backends.comfyui.backend import ComfyUIBackend, prepare_job
from inference.backends.pool import DONE, BackendPool
from tests.inference.backends.comfyui_server import (
    CACHE_ROOT,
    LORA_NAME,
    comfyui_environment,
    launch_server,
    wait_ready,
    write_test_models,
)

pytestmark = pytest.mark.timeout(600)
MODEL = "collagen-random-sd15"
SIZE = 64


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    environment = comfyui_environment()
    models = write_test_models(CACHE_ROOT / "test-models")
    launched = [launch_server(environment, tmp_path_factory.mktemp(f"comfyui-{name}"), models) for name in "ab"]
    try:
        for server in launched:
            wait_ready(server)
        yield launched
    finally:
        for server in launched:
            server.kill()


@pytest.fixture(scope="module")
def backend(servers):
    return ComfyUIBackend(servers[0].url)


def request_of(**changes) -> GenerationRequest:
    settings = dict(model=MODEL, prompt="a lighthouse on a cliff", negative="", width=SIZE, height=SIZE, steps=1,
                    cfg=1.0, seed=7, sampler="Euler", preview="linear")
    settings.update(changes)
    return GenerationRequest(**settings)


def run_job(backend, request, cancel_after_step: int | None = None):
    events, cancel = [], threading.Event()

    def on_event(event) -> None:
        events.append(event)
        if cancel_after_step is not None and isinstance(event, Progress) and event.step >= cancel_after_step:
            cancel.set()

    backend.run(request, on_event, cancel)
    return events


def finished(events) -> Finished:
    outcome = events[-1]
    assert isinstance(outcome, Finished), f"the job ended with {outcome!r}"
    return outcome


def patterned(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(SIZE, SIZE, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def baseline(backend):
    """txt2img, one step: what LoRA, clip skip and regions must change."""
    return finished(run_job(backend, request_of())).images[0]


def test_generate_reports_progress_and_previews_per_step(backend, servers):
    events = run_job(backend, request_of(steps=2, seed=11))
    result = finished(events)
    assert [(e.step, e.total) for e in events if isinstance(e, Progress)] == [(1, 2), (2, 2)]
    previews = [e for e in events if isinstance(e, Preview)]
    assert [e.step for e in previews] == [1, 2]
    assert all(p.image.dtype == np.uint8 and p.image.shape[2] == 3 and p.image.shape[0] <= SIZE for p in previews)
    image = result.images[0]
    assert image.shape == (SIZE, SIZE, 3) and image.std() > 1.0  # a picture, not a blank or NaN frame
    record = result.parameters[0]
    assert record["backend"] == servers[0].url
    assert record["seed"] == 11 and record["sampler"] == "Euler" and record["model"] == f"{MODEL}.safetensors"


def test_img2img_runs_the_strength_cut(backend):
    init = patterned(1)
    events = run_job(backend, request_of(init_image=init, strength=0.5, steps=2))
    result = finished(events)
    assert [(e.step, e.total) for e in events if isinstance(e, Progress)] == [(1, 1)]
    assert result.parameters[0]["denoising_strength"] == 0.5
    assert not np.array_equal(result.images[0], init)


def test_inpaint_keeps_every_pixel_outside_the_blurred_mask(backend):
    init = patterned(2)
    mask = np.zeros((SIZE, SIZE), np.float32)
    mask[24:40, 20:44] = 1.0
    request = request_of(mode="inpaint", init_image=init, mask=mask, mask_blur=2, strength=1.0, steps=1,
                         masked_content="original")
    result = finished(run_job(backend, request)).images[0]
    weight = prepare_job(request, lambda event: None).extensions[0].composite_weight
    outside = weight == 0
    assert outside.any() and (~outside).any()
    assert np.array_equal(result[outside], init[outside])  # byte for byte, like the local engine
    assert not np.array_equal(result[mask > 0], init[mask > 0])


def test_regions_change_the_picture_inside_them(backend, baseline):
    left = np.zeros((SIZE, SIZE), np.float32)
    left[:, : SIZE // 2] = 1.0
    request = request_of(mode="regions", regions=(RegionSpec(mask=left, prompt="a red dragon", strength=1.5),),
                         region_method="latent")
    result = finished(run_job(backend, request)).images[0]
    assert result.shape == baseline.shape and not np.array_equal(result, baseline)


def test_composite_runs_background_and_pieces_then_finishes_together(backend):
    piece_mask = np.zeros((SIZE, SIZE), np.float32)
    piece_mask[16:48, 16:48] = 1.0
    request = request_of(mode="composite", steps=2, composite_step=0.5,
                         pieces=(CompositePiece(mask=piece_mask, prompt="a golden statue"),))
    events = run_job(backend, request)
    result = finished(events)
    # background solo step, piece solo step, the shared last step
    assert [(e.step, e.total) for e in events if isinstance(e, Progress)] == [(1, 3), (2, 3), (3, 3)]
    assert result.images[0].shape == (SIZE, SIZE, 3)


def test_refine_keeps_the_collage_outside_its_bounds(backend):
    init = patterned(3)
    alpha = np.zeros((1, SIZE, SIZE), np.float32)
    alpha[0, 24:40, 24:40] = 1.0
    request = request_of(mode="refine", init_image=init, collage_alpha=alpha, steps=2, refine_edge_width=8)
    result = finished(run_job(backend, request)).images[0]
    paste_weight = prepare_job(request, lambda event: None).extensions[0].paste_weight
    outside = paste_weight == 0
    assert outside.any()
    assert np.array_equal(result[outside], init[outside])
    assert not np.array_equal(result[~outside], init[~outside])


def test_lora_changes_the_picture_and_is_recorded(backend, baseline):
    lora = Path(LORA_NAME).stem
    result = finished(run_job(backend, request_of(loras=(LoraSpec(name=lora, weight=1.0),))))
    assert not np.array_equal(result.images[0], baseline)
    assert result.parameters[0]["loras"] == [{"name": lora, "weight": 1.0}]


def test_clip_skip_changes_the_picture(backend, baseline):
    result = finished(run_job(backend, request_of(clip_skip=2)))
    assert result.parameters[0]["clip_skip"] == 2
    assert not np.array_equal(result.images[0], baseline)


def test_a_model_the_server_lacks_is_one_sentence_before_anything_is_sent(backend):
    history_before = backend.client.get_json("/history")
    events = run_job(backend, request_of(model="no-such-model"))
    assert isinstance(events[-1], Failed) and len(events) == 1
    assert "has no model 'no-such-model'" in events[-1].message and "\n" not in events[-1].message
    assert backend.client.get_json("/history") == history_before


def test_cancel_stops_within_a_step(backend):
    events = run_job(backend, request_of(steps=12, seed=21), cancel_after_step=1)
    outcome = events[-1]
    assert isinstance(outcome, Cancelled), f"the job ended with {outcome!r}"
    progress = [e for e in events if isinstance(e, Progress)]
    # The cancel was asked after step 1 of 12; ComfyUI stops at its next step boundary.
    assert outcome.step <= 2 and progress[-1].step <= 2
    deadline = time.monotonic() + 10  # the server files the interrupted prompt just after saying so
    while backend.client.get_json("/queue")["queue_running"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert backend.client.get_json("/queue") == {"queue_running": [], "queue_pending": []}


def test_two_servers_share_six_jobs_each_as_it_would_run_alone(servers):
    pool = BackendPool([ComfyUIBackend(servers[0].url), ComfyUIBackend(servers[1].url)])
    requests = [request_of(seed=100 + index, prompt=f"a lighthouse, study {index}") for index in range(6)]
    try:
        jobs = [pool.submit(request) for request in requests]
        for job in jobs:
            job.wait(timeout=400)
    finally:
        pool.shutdown()
    assert all(job.state == DONE for job in jobs)
    assert {job.backend for job in jobs} == {servers[0].url, servers[1].url}
    for job in jobs:
        assert isinstance(job.outcome, Finished), job.outcome
        assert job.outcome.parameters[0]["backend"] == job.backend
    # Each job again, alone on a single-server backend: the server it did NOT run on in the pool
    # (both servers at once, one job at a time each), so equal also means equal across servers.
    alone: dict[int, np.ndarray] = {}

    def rerun_on(server_url: str) -> None:
        backend = ComfyUIBackend(server_url)
        for job in jobs:
            if job.backend != server_url:
                alone[job.number] = finished(run_job(backend, job.request)).images[0]

    threads = [threading.Thread(target=rerun_on, args=(server.url,)) for server in servers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=400)
    for job in jobs:
        assert np.array_equal(job.outcome.images[0], alone[job.number]), f"job {job.number} from {job.backend}"


def test_a_server_killed_mid_job_gives_one_sentence_and_the_job_reruns_on_the_other(servers):
    by_url = {server.url: server for server in servers}
    pool = BackendPool([ComfyUIBackend(server.url) for server in servers])
    killed: list[str] = []

    def on_event(event) -> None:
        if isinstance(event, Progress) and not killed:
            killed.append(job.backend)
            by_url[job.backend].kill()

    try:
        job = pool.submit(request_of(steps=3, seed=33), on_event)
        job.wait(timeout=400)
    finally:
        pool.shutdown()
    assert killed and job.lost_on == killed
    notices = [e for e in job.events if isinstance(e, Notice)]
    assert len(notices) == 1 and killed[0] in notices[0].message and "\n" not in notices[0].message
    assert isinstance(job.outcome, Finished), job.outcome
    survivor = next(url for url in by_url if url != killed[0])
    assert job.backend == survivor and job.outcome.parameters[0]["backend"] == survivor
