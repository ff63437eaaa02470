"""FlowMatchEuler as the FLUX pipelines set it up, packing, and the img2img cut per pixel."""

import numpy as np
import pytest
import torch

from inference.flow import packing
from inference.flow.schedule import build_flow_scheduler, calculate_mu, skipped_steps, start_steps
from inference.flow.tiny import FLUX_DEV_SCHEDULER_CONFIG, FLUX_SCHNELL_SCHEDULER_CONFIG


def test_dev_shifts_by_image_size_and_schnell_not():
    assert calculate_mu(256, FLUX_DEV_SCHEDULER_CONFIG) == pytest.approx(0.5)
    assert calculate_mu(4096, FLUX_DEV_SCHEDULER_CONFIG) == pytest.approx(1.15)
    small = build_flow_scheduler(FLUX_DEV_SCHEDULER_CONFIG, 4, 256, "cpu").sigmas
    large = build_flow_scheduler(FLUX_DEV_SCHEDULER_CONFIG, 4, 4096, "cpu").sigmas
    assert small[0] == large[0] == 1.0 and bool((large[1:-1] > small[1:-1]).all())
    schnell = build_flow_scheduler(FLUX_SCHNELL_SCHEDULER_CONFIG, 4, 4096, "cpu").sigmas
    assert torch.allclose(schnell[:-1], torch.linspace(1.0, 0.25, 4, dtype=schnell.dtype))


def test_add_noise_is_the_flow_forward_process_at_the_given_timestep():
    scheduler = build_flow_scheduler(FLUX_DEV_SCHEDULER_CONFIG, 4, 256, "cpu")
    original, noise = torch.ones(1, 16, 2, 2), torch.zeros(1, 16, 2, 2)
    for index, t in enumerate(scheduler.timesteps):
        sigma = scheduler.sigmas[index]
        assert torch.allclose(scheduler.add_noise(original, noise, t[None]), original * (1 - sigma))


@pytest.mark.parametrize("steps,strength", [(10, 0.7), (28, 0.3), (4, 0.5), (3, 1.0), (5, 0.0)])
def test_a_pixel_at_the_run_strength_starts_with_the_run(steps, strength):
    run_start = int(skipped_steps(steps, strength))
    run_length = steps - run_start
    pixels = np.array([strength, np.float32(strength), 0.0], dtype=np.float32)
    start = start_steps(pixels, steps, run_start, run_length)
    assert start[0] == 0 and start[1] == 0 and start[2] == run_length


def test_packing_round_trips_and_orders_tokens_row_major():
    latents = torch.arange(2 * 4 * 6, dtype=torch.float32).reshape(1, 2, 4, 6)
    tokens = packing.pack(latents)
    assert tokens.shape == (1, 6, 8)
    assert tokens[0, 1].tolist() == [2, 3, 8, 9, 26, 27, 32, 33]  # token (0, 1): channel 0's 2x2, then channel 1's
    assert torch.equal(packing.unpack(tokens, 4, 6), latents)
    ids = packing.image_ids(4, 6)
    assert ids[1].tolist() == [0, 0, 1] and ids[3].tolist() == [0, 1, 0]


def test_the_fill_mask_carries_each_latent_pixels_8x8_block():
    mask = torch.zeros(1, 1, 16, 16)
    mask[0, 0, 8:, :8] = 1.0
    channels = packing.pixel_mask_channels(mask, 8)
    assert channels.shape == (1, 64, 2, 2)
    assert channels[0, :, 1, 0].min() == 1 and channels[0, :, 0, 0].max() == 0
