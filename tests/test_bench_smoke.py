"""The benchmark harness (bench/) in seconds, and the UNet fast path (inference/sd/fastpath.py).

The real benchmark runs are not tests (python -m bench); these check that the harness alternates
its pairs, computes its ratios, runs a case end to end and writes its JSON, and that the fast path
computes what the plain UNet computes, stepping aside for regional processors and LoRAs.
"""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch

from bench.harness import CallTimer, PairRuns, Timing, ratio_result, run_pairs, run_rounds
from inference.api import Finished, GenerationRequest, RegionSpec
from inference.engine import Engine
from inference.sd.fastpath import FAST_PATH_KEY, FastPathModels, FastPathOptions, install_fast_path
from inference.tiny import build_tiny
from tests.inference.engine_fakes import FakeModels

torch.set_num_threads(1)


# ---- harness ------------------------------------------------------------------------------------


def test_pairs_alternate_their_order_after_a_discarded_warmup():
    calls = []
    runs = run_pairs(lambda: calls.append("s") or "S", lambda: calls.append("b") or "B", pairs=4, warmup=1)
    assert calls == ["b", "s", "b", "s", "s", "b", "b", "s", "s", "b"]
    assert len(runs.subject) == len(runs.baseline) == 4
    assert runs.first_outputs == ("S", "B")


def test_rounds_share_one_baseline_run_and_alternate_each_subject_around_it():
    calls = []
    subjects = {name: (lambda name=name: calls.append(name) or name) for name in ("x", "y")}
    measured = run_rounds(lambda: calls.append("b") or "B", subjects, rounds=3, warmup=0)
    assert calls == ["b", "x", "y", "y", "x", "b", "b", "x", "y"]
    assert measured["x"].baseline == measured["y"].baseline and len(measured["x"].subject) == 3
    assert measured["y"].first_outputs == ("y", "B")


def test_ratio_result_takes_the_median_of_pair_ratios_and_judges_the_target():
    runs = PairRuns(subject=[Timing(wall=2.0, cpu=c) for c in (1.1, 1.3, 1.2)],
                    baseline=[Timing(wall=1.0, cpu=1.0) for _ in range(3)])
    result = ratio_result(runs, case="9", name="x", family="sd15", subject="a", baseline="b", clock="cpu",
                          target=1.25)
    assert result.median == pytest.approx(1.2) and (result.low, result.high) == pytest.approx((1.1, 1.3))
    assert result.status == "ok" and result.best == pytest.approx(1.1)
    assert result.details["ratio_wall_median"] == pytest.approx(2.0)
    result.target = 1.15
    assert result.status == "MISS"
    assert json.loads(json.dumps(result.to_json()))["status"] == "MISS"


def test_call_timer_counts_only_time_inside_the_watched_module():
    layer = torch.nn.Linear(64, 64)
    timer = CallTimer().watch_modules([layer])
    with torch.no_grad():
        for _ in range(3):
            layer(torch.randn(8, 64))
    sum(range(200_000))  # outside: not counted
    inside = timer.take()
    assert timer.calls == 0 and inside.wall > 0.0
    timer.remove()
    layer(torch.randn(8, 64))
    assert timer.take().wall == 0.0


def test_bench_runs_the_loop_case_on_tiny_models_and_writes_json(tmp_path, capsys, monkeypatch):
    from bench.__main__ import main

    for name in ("DIFFUSERS_VERBOSITY", "TRANSFORMERS_VERBOSITY", "HF_HUB_DISABLE_PROGRESS_BARS"):
        monkeypatch.setenv(name, "error" if "VERBOSITY" in name else "1")  # bench sets them; restored after

    out = tmp_path / "results.json"
    status = main(["--cases", "loop", "--model-size", "tiny", "--families", "sd15", "--size", "64", "--steps", "2",
                   "--pairs", "1", "--warmup", "0", "--json", str(out), "--workdir", str(tmp_path / "work")])
    assert status == 0
    data = json.loads(out.read_text())
    (result,) = data["results"]
    assert result["case"] == "1" and result["family"] == "sd15" and result["baseline"] == "StableDiffusionPipeline"
    # Both sides did the same work: the same image from the same seed, components and sampler.
    assert result["details"]["max_pixel_difference"] == 0
    assert result["median"] > 0 and result["status"] in ("ok", "MISS")
    assert 0 < result["details"]["network_s"] and result["details"]["direct_ratio"] > 0
    assert data["meta"]["machine"]["nproc"] >= 1 and data["meta"]["command"].startswith("python -m bench")
    assert "Engine.run generate vs StableDiffusionPipeline" in capsys.readouterr().out


def test_bench_refuses_an_unknown_case(capsys):
    from bench.__main__ import main

    assert main(["--cases", "loop,warp"]) == 2
    assert "Unknown case 'warp'" in capsys.readouterr().err


# ---- fast path ----------------------------------------------------------------------------------


def generate(engine, **overrides) -> np.ndarray:
    values = dict(model="builtin:tiny-sd15", prompt="a red apple", width=64, height=64, steps=2, sampler="Euler",
                  seed=1234, preview="none")
    values.update(overrides)
    events = []
    engine.run(GenerationRequest(**values), events.append, threading.Event())
    assert isinstance(events[-1], Finished), events[-1]
    return events[-1].images[0]


def strips(count: int) -> tuple:
    regions = []
    for index in range(count):
        mask = np.zeros((64, 64), np.float32)
        mask[:, index * 64 // count : (index + 1) * 64 // count] = 1.0
        regions.append(RegionSpec(mask=mask, prompt=f"region {index}"))
    return tuple(regions)


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_fast_path_gives_the_plain_image_and_stays_installed_once(family):
    name = f"builtin:tiny-{family}"
    plain = generate(Engine(FakeModels()), model=name)
    models = FakeModels()
    fast_engine = Engine(FastPathModels(models, FastPathOptions()))
    fast = generate(fast_engine, model=name)
    assert np.abs(fast.astype(int) - plain.astype(int)).max() <= 1  # fused matmuls round differently
    model = models.cache[name]
    installed = model.extra[FAST_PATH_KEY]
    assert installed.calls["eager"] == 2 and installed.processors_are_fast()
    assert type(installed.attention[0].processor).__name__ == "FusedAttnProcessor2_0"
    generate(fast_engine, model=name)
    assert model.extra[FAST_PATH_KEY] is installed  # a second load does not wrap the UNet again


def test_fast_path_leaves_regional_processors_alone():
    plain = generate(Engine(FakeModels()), mode="regions", regions=strips(2))
    models = FakeModels()
    fast = generate(Engine(FastPathModels(models, FastPathOptions(compile=True, compile_backend="eager"))),
                    mode="regions", regions=strips(2))
    installed = models.cache["builtin:tiny-sd15"].extra[FAST_PATH_KEY]
    assert installed.calls == {"fast": 0, "eager": 2}  # never the compiled graph under foreign processors
    assert installed.processors_are_fast()  # the regions extension restored the fused processors
    assert np.abs(fast.astype(int) - plain.astype(int)).max() <= 1


def test_fast_path_does_not_bypass_a_lora(tmp_path):
    from inference.adapters import apply_loras
    from tests.inference.ckpt_helpers import kohya_lora_tensors, write_safetensors

    reference, fast = build_tiny("sd15"), build_tiny("sd15")
    install_fast_path(fast, FastPathOptions())
    lora = write_safetensors(tmp_path / "style.safetensors", kohya_lora_tensors(reference, seed=1))
    generator = torch.Generator().manual_seed(3)
    sample = torch.randn(1, 4, 8, 8, generator=generator)
    context = torch.randn(1, 77, reference.unet.config.cross_attention_dim, generator=generator)
    with torch.no_grad():
        base = reference.unet(sample, 10, encoder_hidden_states=context).sample
        for model in (reference, fast):
            apply_loras(model, [(lora, 1.0)])
        expected = reference.unet(sample, 10, encoder_hidden_states=context).sample
        got = fast.unet(sample, 10, encoder_hidden_states=context).sample
    assert not torch.allclose(expected, base, atol=1e-4)  # the LoRA matters
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    assert fast.extra[FAST_PATH_KEY].calls["eager"] == 1


@pytest.mark.slow
def test_compiled_fast_path_keeps_its_graph_when_the_size_changes():
    from torch._dynamo.utils import counters

    engine = Engine(FastPathModels(FakeModels(), FastPathOptions(compile=True, compile_backend="eager")))
    generate(engine, width=64, height=64)
    graphs = counters["stats"]["unique_graphs"]
    generate(engine, width=128, height=192, prompt="a red apple " * 30)  # other size, two prompt chunks
    assert counters["stats"]["unique_graphs"] == graphs


# ---- the engine's fast-path hook (the editor's `fast_path` setting) -------------------------------


def test_fast_path_hook_follows_the_setting_and_the_device():
    from inference.sd.fastpath import FastPathHook, fast_path_applies

    assert fast_path_applies("auto", "cuda:0") and not fast_path_applies("auto", "cpu")
    assert fast_path_applies("on", "cpu") and not fast_path_applies("off", "cuda")
    plain = generate(Engine(FakeModels()))
    models = FakeModels()
    hook = FastPathHook("auto", compile=False)
    engine = Engine(models, fast_path=hook)
    generate(engine)
    model = models.cache["builtin:tiny-sd15"]
    assert FAST_PATH_KEY not in model.extra  # auto on a CPU: the plain UNet
    hook.setting = "on"
    fused = generate(engine)
    installed = model.extra[FAST_PATH_KEY]
    assert installed.enabled and installed.calls["eager"] == 2 and installed.processors_are_fast()
    assert np.abs(fused.astype(int) - plain.astype(int)).max() <= 1
    hook.setting = "off"  # changed in the settings dialog: the next generation runs the original processors
    unfused = generate(engine)
    assert not installed.enabled and not installed.processors_are_fast()
    assert type(installed.attention[0].processor).__name__ != "FusedAttnProcessor2_0"
    assert np.abs(unfused.astype(int) - plain.astype(int)).max() <= 1


def test_first_compile_is_announced_once_and_a_size_in_the_buckets_reuses_the_graph():
    from torch._dynamo.utils import counters

    from inference.api import Notice
    from inference.sd.fastpath import COMPILE_NOTICE, FastPathHook

    models = FakeModels()
    engine = Engine(models, fast_path=FastPathHook("on", compile_backend="eager"))

    def notices(**overrides) -> list[str]:
        values = dict(model="builtin:tiny-sd15", prompt="a red apple", width=64, height=64, steps=2,
                      sampler="Euler", seed=1234, preview="none")
        values.update(overrides)
        events = []
        engine.run(GenerationRequest(**values), events.append, threading.Event())
        assert isinstance(events[-1], Finished), events[-1]
        return [event.message for event in events if isinstance(event, Notice)]

    assert notices() == [COMPILE_NOTICE]  # before step 1 of the first generation, not a silent wait
    installed = models.cache["builtin:tiny-sd15"].extra[FAST_PATH_KEY]
    assert installed.calls["fast"] == 2 and installed.calls["eager"] == 0  # the compiled graph ran
    graphs = counters["stats"]["unique_graphs"]
    step_px, min_px = installed.bucket_px()
    assert notices(width=64 + step_px, height=64 + 2 * step_px) == []
    assert counters["stats"]["unique_graphs"] == graphs and installed.calls["fast"] == 4
    # Off the bucket grid: eager, rather than compiling a graph for one size.
    assert notices(width=64 + step_px // 2, height=64) == [] and installed.calls["eager"] == 2


def test_gpu_bench_smoke_on_a_cpu_runs_every_case_and_the_compiled_path(tmp_path):
    from bench.gpu import main

    out, table = tmp_path / "gpu.json", tmp_path / "gpu.md"
    status = main(["--model-size", "tiny", "--device", "cpu", "--size", "64", "--steps", "2", "--pairs", "1",
                   "--warmup", "0", "--families", "sd15", "--compile-backend", "eager", "--json", str(out),
                   "--markdown", str(table)])
    assert status == 0
    results = {r["name"]: r for r in json.loads(out.read_text())["results"]}
    for name in ("its_ours_eager", "loop_vs_stock", "preview_linear", "regions_attention_8", "latent_couple_4",
                 "its_ours_fused", "its_stock_compiled"):
        assert results[name]["median"] > 0, name
    compiled = results["its_ours_compiled"]["details"]
    assert compiled["compiled_graphs"] > 0 and compiled["fast_calls"]["fast"] > 0  # compiled code really ran
    assert compiled["new_graphs_on_size_change"] == 0 and compiled["other_size"] != [64, 64]
    assert "| sd15 | our loop, fast path + torch.compile |" in table.read_text()
