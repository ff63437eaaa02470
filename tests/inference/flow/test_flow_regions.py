"""FLUX regions: locality at the joint-attention processor (acceptance 3), the full-canvas region,
per-region negatives under true CFG and per-region LoRAs in latent couple (acceptance 4)."""

import numpy as np
import pytest
import torch

from inference.api import LoraSpec, Notice, RegionSpec
from inference.flow import packing
from inference.flow.regions import FlowAttentionCoupleExtension, flow_region_extensions, joint_attention_bias
from inference.sd.context import LoopExtension
from tests.inference.flow.flow_helpers import flux_request, run_flow, tiny_flux

WIDTH, HEIGHT = 64, 48  # 4 x 3 image tokens of 16 px


def left_half() -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), dtype=np.float32)
    mask[:, : WIDTH // 2] = 1.0
    return mask


class RecordEstimates(LoopExtension):
    """Keeps the latents after the last step (what the decode sees)."""

    def after_step(self, ctx, step_index, latents):
        self.latents = latents.clone()
        return latents


# ---- acceptance 3: locality at the processor ------------------------------------------------------------


def attention_inputs(model, text_states):
    transformer = model.transformer
    ids = torch.cat([packing.text_ids(text_states.shape[1]), packing.image_ids(HEIGHT // 8, WIDTH // 8)])
    return transformer.pos_embed(ids)


@pytest.mark.parametrize("stream", ["double", "single"])
def test_image_queries_of_a_region_ignore_the_other_regions_prompt(stream):
    model = tiny_flux("dev")
    dim = model.transformer.inner_dim
    base, region = 6, 5  # token counts of the base prompt and of each region's segment
    token_masks = [np.array([[1, 1, 0, 0]] * 3, np.float32), np.array([[0, 0, 1, 1]] * 3, np.float32)]
    bias = joint_attention_bias(token_masks, [1.0, 1.5], base, [region, region], [False, False])
    mask = torch.from_numpy(bias).float()[None, None]
    generator = torch.Generator().manual_seed(0)
    text = torch.randn(1, base + 2 * region, dim, generator=generator)
    image = torch.randn(1, 12, dim, generator=generator)
    other_text = text.clone()
    other_text[:, base + region :] = torch.randn(1, region, dim, generator=generator)  # B's prompt changes
    rotary = attention_inputs(model, text)

    def image_output(text_states):
        with torch.no_grad():
            if stream == "double":
                attn = model.transformer.transformer_blocks[0].attn
                out, _ = attn(hidden_states=image, encoder_hidden_states=text_states, attention_mask=mask,
                              image_rotary_emb=rotary)
                return out
            attn = model.transformer.single_transformer_blocks[0].attn
            out = attn(hidden_states=torch.cat([text_states, image], dim=1), attention_mask=mask,
                       image_rotary_emb=rotary)
            return out[:, text_states.shape[1] :]

    first, second = image_output(text), image_output(other_text)
    in_a = torch.from_numpy(token_masks[0].reshape(-1) > 0)
    assert torch.equal(first[:, in_a], second[:, in_a])
    assert (first[:, ~in_a] - second[:, ~in_a]).abs().min() > 0


def test_the_mask_lets_the_base_reach_every_image_token_and_regions_only_their_own():
    token_masks = [np.array([[1.0, 0.5, 0.0]]), np.array([[0.0, 0.0, 1.0]])]
    bias = joint_attention_bias(token_masks, [1.0, 2.0], 2, [1, 1], [False, False])
    image = slice(4, 7)
    weights = np.exp(bias[image, :4])
    # The text columns of each image token sum to one plain prompt's worth, split by weight.
    assert np.allclose(weights[:, 0] + weights[:, 2] + weights[:, 3], 1.0)
    assert np.allclose(weights[:, 2], [0.5, 0.5 / 1.5, 0.0]) and np.allclose(weights[:, 3], [0, 0, 2 / 3])
    assert np.all(bias[:2, 2:4] == -np.inf) and np.all(bias[2, 3] == -np.inf)  # base text does not read regions
    assert bias[2, 4] == 0 and bias[2, 6] == -np.inf  # region 1's text reads its own image tokens only


# ---- full-canvas region == plain --------------------------------------------------------------------


def final_latents(model, request, extensions=(), **kwargs):
    recorder = RecordEstimates()
    run_flow(model, request, extensions=[*extensions, recorder], **kwargs)
    return recorder.latents


def test_a_full_canvas_region_with_the_base_prompt_is_the_plain_run():
    model = tiny_flux("dev")
    request = flux_request(width=WIDTH, height=HEIGHT, steps=2)
    full = RegionSpec(np.ones((HEIGHT, WIDTH), np.float32), request.prompt)
    plain = final_latents(model, request)
    folded = final_latents(model, request, [FlowAttentionCoupleExtension((full,), base_prompt=request.prompt)])
    assert torch.equal(plain, folded)
    # Not folded: the copy's tokens really are attended, half weight each beside the base.
    unfolded = final_latents(model, request, [FlowAttentionCoupleExtension((full,), base_prompt=request.prompt,
                                                                            fold=False, trim_padding=False)])
    assert (plain - unfolded).abs().max() <= 1e-5 * plain.abs().max()


def test_a_full_canvas_region_is_float64_exact():
    model = tiny_flux("dev")
    for part in (model.transformer, model.vae, model.text_encoder, model.text_encoder_2):
        part.to(torch.float64)
    model.dtype = torch.float64
    try:
        request = flux_request(width=WIDTH, height=HEIGHT, steps=2)
        full = RegionSpec(np.ones((HEIGHT, WIDTH), np.float32), request.prompt)
        plain = final_latents(model, request)
        unfolded = final_latents(model, request, [FlowAttentionCoupleExtension((full,), base_prompt=request.prompt,
                                                                                fold=False, trim_padding=False)])
        assert (plain - unfolded).abs().max() <= 1e-12 * plain.abs().max()
    finally:
        for part in (model.transformer, model.vae, model.text_encoder, model.text_encoder_2):
            part.to(torch.float32)
        model.dtype = torch.float32


# ---- acceptance 4: per-region negatives under true CFG ------------------------------------------------


def test_a_region_negative_changes_only_the_negative_pass_of_its_own_image_tokens():
    model = tiny_flux("dev")
    request = flux_request(width=WIDTH, height=HEIGHT, steps=2, negative="blurry")
    masks = {}
    for negative in ("grey fog", "neon lights"):
        regions = (RegionSpec(left_half(), "a cat", negative=negative), RegionSpec(1 - left_half(), "a dog"))
        extension = FlowAttentionCoupleExtension(regions, base_negative="blurry", base_prompt=request.prompt)
        final_latents(model, request, [extension], true_cfg=3.0)
        masks[negative] = extension.masks
    # The right region has no negative of its own: it folds into the base negative; region segments are
    # their own tokens without padding.
    tokens = {text: len(model.tokenizer_2(text).input_ids) for text in ("grey fog", "neon lights", "a cat", "a dog")}
    for negative in ("grey fog", "neon lights"):
        assert masks[negative]["uncond"].shape[0] == 512 + tokens[negative] + 12
        assert masks[negative]["cond"].shape[0] == 512 + tokens["a cat"] + tokens["a dog"] + 12


def test_region_negatives_move_their_own_half_more_than_the_other():
    model = tiny_flux("dev")
    request = flux_request(width=WIDTH, height=HEIGHT, steps=2, negative="blurry")

    def run(negative):
        regions = (RegionSpec(left_half(), "a cat", negative=negative), RegionSpec(1 - left_half(), "a dog"))
        return final_latents(model, request, [FlowAttentionCoupleExtension(regions, base_negative="blurry",
                                                                           base_prompt=request.prompt)], true_cfg=3.0)

    first, second = run("grey fog"), run("neon lights")
    change = (first - second).abs()
    left, right = change[..., : WIDTH // 16].mean().item(), change[..., WIDTH // 16 :].mean().item()
    assert left > 0 and left > 2 * right
    # Without true CFG the negatives are not used at all.
    def run_plain(negative):
        regions = (RegionSpec(left_half(), "a cat", negative=negative),)
        return final_latents(model, request, [FlowAttentionCoupleExtension(regions, base_prompt=request.prompt)])

    assert torch.equal(run_plain("grey fog"), run_plain("neon lights"))


# ---- latent couple with a LoRA per region ----------------------------------------------------------------


def test_each_region_moves_towards_its_own_lora_in_latent_couple():
    from peft import LoraConfig

    from inference.flow.tiny import build_tiny_flux

    model = build_tiny_flux("dev")  # its own copy: the adapters stay on it
    for name, seed in (("ink", 1), ("oil", 2)):
        torch.manual_seed(seed)
        config = LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0", "proj_mlp"],
                            init_lora_weights=False)
        model.transformer.add_adapter(config, adapter_name=name)
    applied = []

    def apply_lora_specs(specs):
        applied.append(tuple(spec.name for spec in specs))
        if specs:
            model.transformer.enable_adapters()
            model.transformer.set_adapters([spec.name for spec in specs], [spec.weight for spec in specs])
        else:
            model.transformer.disable_adapters()

    def run(request, extensions=(), loras=()):
        apply_lora_specs(list(loras))
        return final_latents(model, request, extensions, loras=tuple(loras), apply_loras=apply_lora_specs)

    prompt = "a bowl of fruit"
    alone = flux_request(width=WIDTH, height=HEIGHT, steps=2, prompt=prompt)
    ink_alone = run(alone, loras=(LoraSpec("ink"),))
    oil_alone = run(alone, loras=(LoraSpec("oil"),))
    plain = run(alone)
    request = flux_request(width=WIDTH, height=HEIGHT, steps=2, prompt=prompt, mode="regions", region_method="latent",
                           regions=(RegionSpec(left_half(), prompt, loras=(LoraSpec("ink"),)),
                                    RegionSpec(1 - left_half(), prompt, loras=(LoraSpec("oil"),))))
    applied.clear()
    couple = run(request, flow_region_extensions(request, model))

    def distance(a, b, columns):
        return (a - b)[..., columns].abs().mean().item()

    left, right = slice(0, WIDTH // 16), slice(WIDTH // 16, WIDTH // 8)
    assert distance(couple, ink_alone, left) < 0.5 * distance(couple, oil_alone, left)
    assert distance(couple, oil_alone, right) < 0.5 * distance(couple, ink_alone, right)
    assert distance(couple, ink_alone, left) < 0.5 * distance(plain, ink_alone, left)
    assert distance(couple, oil_alone, right) < 0.5 * distance(plain, oil_alone, right)
    assert applied[-1] == ()
    assert applied.count(("ink",)) == request.steps + 1  # once to encode the region's prompt, then once per step


def test_region_notices_use_the_image_token_cell():
    model = tiny_flux("dev")
    small = np.zeros((HEIGHT, WIDTH), np.float32)
    small[:8, :8] = 1.0
    request = flux_request(width=WIDTH, height=HEIGHT, steps=1)
    events = []
    run_flow(model, request, extensions=[FlowAttentionCoupleExtension((RegionSpec(small, "a moon"),),
                                                                      base_prompt=request.prompt)],
             emit=events.append)
    assert any(isinstance(e, Notice) and "16-px cell" in e.message for e in events)
