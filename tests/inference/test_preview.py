"""inference.preview: SPEC §5 linear factors, and TAESD decoders in their three on-disk layouts."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from inference.api import ModelError, Notice
from inference.engine import Engine
from inference.preview import PreviewRenderer, linear_preview, prepare_taesd_decoder
from tests.inference.engine_fakes import FakeModels, finished, preview_events, run_events, tiny_request

SD15_ROWS = [[0.3512, 0.2297, 0.3227], [0.3250, 0.4974, 0.2350], [-0.2829, 0.1762, 0.2721], [-0.2120, -0.2616, -0.7177]]
SDXL_ROWS = [[0.3651, 0.4232, 0.4341], [-0.2533, -0.0042, 0.1068], [0.1076, 0.1111, -0.0362], [-0.3165, -0.2492, -0.2188]]
SDXL_BIAS = [0.1084, -0.0175, -0.0011]


def to_byte(value: float) -> int:
    return int(np.clip(np.rint((value + 1.0) * 127.5), 0, 255))


@pytest.mark.parametrize("channel", range(4))
def test_one_hot_latent_gives_that_channels_row_sd15(channel):
    latents = torch.zeros(1, 4, 3, 5)
    latents[0, channel] = 1.0
    image = linear_preview(latents, "sd15")
    assert image.shape == (3, 5, 3) and image.dtype == np.uint8
    assert image[1, 2].tolist() == [to_byte(v) for v in SD15_ROWS[channel]]


def test_sdxl_factors_include_the_bias():
    zero = linear_preview(torch.zeros(1, 4, 2, 2), "sdxl")
    assert zero[0, 0].tolist() == [to_byte(v) for v in SDXL_BIAS]
    latents = torch.zeros(1, 4, 2, 2)
    latents[0, 1] = 2.0
    expected = [to_byte(2.0 * r + b) for r, b in zip(SDXL_ROWS[1], SDXL_BIAS)]
    assert linear_preview(latents, "sdxl")[1, 1].tolist() == expected


def test_mixed_latent_is_the_matrix_product_and_saturates():
    latent = np.array([0.5, -1.0, 0.25, 2.0], dtype=np.float32)
    rgb = latent @ np.array(SD15_ROWS, dtype=np.float32)
    image = linear_preview(latent.reshape(1, 4, 1, 1), "sd15")
    assert image[0, 0].tolist() == [to_byte(v) for v in rgb]
    assert linear_preview(np.full((1, 4, 1, 1), 50.0, np.float32), "sd15")[0, 0].max() == 255


def test_unknown_family_has_no_linear_factors():
    with pytest.raises(ModelError, match="no linear preview factors"):
        linear_preview(torch.zeros(1, 4, 2, 2), "flux")


def random_decoder_state(seed=0):
    from diffusers.models.autoencoders.vae import DecoderTiny

    torch.manual_seed(seed)
    decoder = DecoderTiny(4, 3, num_blocks=(3, 3, 3, 1), block_out_channels=(64, 64, 64, 64),
                          upsampling_scaling_factor=2, act_fn="relu", upsample_fn="nearest")
    return decoder, decoder.layers.state_dict()


def write_original_taesd(path, state):
    """The layout madebyollin publishes: a Sequential that starts with a weightless Clamp."""
    original = {}
    for key, value in state.items():
        index, _, rest = key.partition(".")
        original[f"{int(index) + 1}.{rest}"] = value.contiguous()
    save_file(original, str(path))


def test_original_diffusers_file_and_folder_layouts_all_load(tmp_path):
    decoder, state = random_decoder_state()
    original = tmp_path / "taesd_decoder.safetensors"
    write_original_taesd(original, state)
    diffusers_file = tmp_path / "taesd_diffusers.safetensors"
    save_file({f"decoder.layers.{k}": v.contiguous() for k, v in state.items()}, str(diffusers_file))
    folder = tmp_path / "taesd_folder"
    folder.mkdir()
    save_file({f"decoder.layers.{k}": v.contiguous() for k, v in state.items()}, str(folder / "diffusion_pytorch_model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"_class_name": "AutoencoderTiny", "latent_channels": 4}))

    latents = torch.randn(1, 4, 4, 6, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = ((decoder(latents)[0].permute(1, 2, 0).numpy() + 1.0) * 127.5).round().clip(0, 255)
    for source in (original, diffusers_file, folder):
        image = PreviewRenderer().render(latents, "sd15", source)
        assert image.shape == (32, 48, 3) and image.dtype == np.uint8
        assert np.abs(image.astype(int) - expected.astype(int)).max() <= 1


def test_broken_taesd_file_is_a_model_error(tmp_path):
    junk = tmp_path / "taesd_decoder.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError, match="could not be read"):
        prepare_taesd_decoder(junk)
    wrong = tmp_path / "other.safetensors"
    save_file({"encoder.weight": torch.zeros(2)}, str(wrong))
    with pytest.raises(ModelError, match="not a TAESD decoder"):
        prepare_taesd_decoder(wrong)


def test_engine_previews_every_step_linear_by_default():
    events = run_events(Engine(FakeModels()), tiny_request(steps=3))
    previews = preview_events(events)
    assert [p.step for p in previews] == [1, 2, 3]
    assert all(p.image.shape == (8, 8, 3) and p.image.dtype == np.uint8 for p in previews)
    finished(events)


def test_engine_uses_taesd_when_asked_and_present(tmp_path):
    _, state = random_decoder_state()
    path = tmp_path / "taesd_decoder.safetensors"
    write_original_taesd(path, state)
    engine = Engine(FakeModels(taesd=path))
    previews = preview_events(run_events(engine, tiny_request(steps=2, preview="taesd")))
    assert len(previews) == 2 and all(p.image.shape == (64, 64, 3) for p in previews)


def test_engine_falls_back_to_linear_with_a_notice_without_taesd():
    events = run_events(Engine(FakeModels(taesd=None)), tiny_request(steps=2, preview="taesd"))
    assert any(isinstance(e, Notice) and "TAESD" in e.message for e in events)
    assert all(p.image.shape == (8, 8, 3) for p in preview_events(events))


def test_engine_sends_no_previews_when_off():
    events = run_events(Engine(FakeModels()), tiny_request(steps=2, preview="none"))
    assert preview_events(events) == []
    finished(events)

