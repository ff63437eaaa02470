"""LyCORIS LoHa/LoKr files in the kohya key layout on the tiny SD model, two-weight LoRA tags,
prompts with lone surrogates, and notices for embedding names a model cannot use."""

from __future__ import annotations

import pytest
import torch

from inference.adapters import apply_loras
from inference.api import Finished, LoraSpec, ModelError, Notice, RequestError
from inference.engine import Engine
from inference.sd.prompt import (
    embedding_notices,
    encode_prompt,
    parse_lora_tags,
    strip_embedding_syntax,
    tokenize_chunks,
)
from inference.tiny import build_tiny
from tests.inference.ckpt_helpers import kohya_lora_tensors, write_safetensors
from tests.inference.engine_fakes import FakeModels, run_events, tiny_request
from tests.inference.test_adapters import prompt_embedding, unet_output

TARGET = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"  # one Linear to check exactly


def attention_linears(model):
    for name, module in model.unet.named_modules():
        if isinstance(module, torch.nn.Linear) and (".attn1." in name or ".attn2." in name) \
                and name.endswith(("to_q", "to_k", "to_v", "to_out.0")):
            yield name, module


def loha_tensors(model, rank: int = 2, seed: int = 0) -> tuple[dict, dict]:
    """kohya LoHa: `lora_unet_<diffusers path>.hada_w1_a/_w1_b/_w2_a/_w2_b` and `.alpha` per module;
    also returns each module's ΔW by the LyCORIS formula (w1a@w1b)*(w2a@w2b)*alpha/rank."""
    generator = torch.Generator().manual_seed(seed)
    tensors, deltas = {}, {}
    for name, module in attention_linears(model):
        key = "lora_unet_" + name.replace(".", "_")
        parts = {"hada_w1_a": (module.out_features, rank), "hada_w1_b": (rank, module.in_features),
                 "hada_w2_a": (module.out_features, rank), "hada_w2_b": (rank, module.in_features)}
        made = {suffix: torch.randn(*shape, generator=generator) * 0.3 for suffix, shape in parts.items()}
        alpha = 1.0
        tensors.update({f"{key}.{suffix}": value for suffix, value in made.items()})
        tensors[f"{key}.alpha"] = torch.tensor(alpha)
        deltas[name] = ((made["hada_w1_a"] @ made["hada_w1_b"]) * (made["hada_w2_a"] @ made["hada_w2_b"])
                        * alpha / rank)
    return tensors, deltas


def factor_pair(n: int) -> tuple[int, int]:
    a = max(f for f in range(1, int(n ** 0.5) + 1) if n % f == 0)
    return a, n // a


def lokr_tensors(model, rank: int = 2, seed: int = 0) -> tuple[dict, dict]:
    """kohya LoKr: full `lokr_w1` (small), `lokr_w2_a/_w2_b` decomposed, `.alpha`; ΔW = kron(w1, w2a@w2b)*alpha/rank."""
    generator = torch.Generator().manual_seed(seed)
    tensors, deltas = {}, {}
    for name, module in attention_linears(model):
        key = "lora_unet_" + name.replace(".", "_")
        (a, c), (b, d) = factor_pair(module.out_features), factor_pair(module.in_features)
        w1 = torch.randn(a, b, generator=generator) * 0.3
        w2a, w2b = torch.randn(c, rank, generator=generator) * 0.3, torch.randn(rank, d, generator=generator) * 0.3
        alpha = 4.0
        tensors.update({f"{key}.lokr_w1": w1, f"{key}.lokr_w2_a": w2a, f"{key}.lokr_w2_b": w2b,
                        f"{key}.alpha": torch.tensor(alpha)})
        deltas[name] = torch.kron(w1, w2a @ w2b) * alpha / rank
    return tensors, deltas


def module_output_with_delta(model, name: str, delta: torch.Tensor, weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    module = model.unet.get_submodule(name)
    x = torch.randn(3, delta.shape[1], generator=torch.Generator().manual_seed(5))
    base = module.base_layer if hasattr(module, "base_layer") else module
    expected = torch.nn.functional.linear(x, base.weight + weight * delta, base.bias)
    with torch.no_grad():
        return module(x), expected


@pytest.mark.parametrize("make", [loha_tensors, lokr_tensors], ids=["LoHa", "LoKr"])
def test_loha_and_lokr_files_apply_their_exact_delta_weights(tmp_path, make):
    model = build_tiny("sd15")
    tensors, deltas = make(model)
    path = write_safetensors(tmp_path / f"{make.__name__}.safetensors", tensors)
    base = unet_output(model)
    apply_loras(model, [(path, 0.8)])
    got, expected = module_output_with_delta(model, TARGET, deltas[TARGET], 0.8)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert not torch.equal(unet_output(model), base)
    apply_loras(model, [(path, 0.0)])
    assert torch.equal(unet_output(model), base)


def test_lycoris_tucker_files_and_broken_modules_are_one_sentence(tmp_path):
    model = build_tiny("sd15")
    tensors, _ = loha_tensors(model)
    key = next(k for k in tensors if k.endswith("hada_w1_a")).rsplit(".", 1)[0]
    tucker = write_safetensors(tmp_path / "tucker.safetensors", {**tensors, f"{key}.hada_t1": torch.zeros(2, 2, 3, 3)})
    with pytest.raises(ModelError, match=r"tucker\.safetensors: uses the LyCORIS Tucker form"):
        apply_loras(model, [(tucker, 1.0)])
    broken = dict(tensors)
    del broken[f"{key}.hada_w2_b"]
    with pytest.raises(ModelError, match=r"lacks its hada_w2_b weight"):
        apply_loras(model, [(write_safetensors(tmp_path / "broken.safetensors", broken), 1.0)])


def test_separate_text_encoder_and_unet_weights(tmp_path):
    model = build_tiny("sd15")
    lora = write_safetensors(tmp_path / "style.safetensors", kohya_lora_tensors(model, seed=1))
    base_unet, base_text = unet_output(model), prompt_embedding(model, "a red house")
    apply_loras(model, [(lora, 0.0, 1.0)])  # <lora:style:0:1>: the UNet only
    assert torch.equal(prompt_embedding(model, "a red house"), base_text)
    assert not torch.equal(unet_output(model), base_unet)
    apply_loras(model, [(lora, 1.0, 0.0)])  # <lora:style:1:0>: the text encoder only
    assert torch.equal(unet_output(model), base_unet)
    assert not torch.equal(prompt_embedding(model, "a red house"), base_text)


def test_lora_tags_read_both_weights_as_a1111_does():
    text, loras = parse_lora_tags("<lora:a:0.5:0.25> x <lora:b:0.7> <lora:c> <lora:d:te=0.3:unet=0.8> "
                                  "<lora:e:1:0.5:8> <lora:f:unet=0>")
    assert text == "x"
    assert loras == [LoraSpec("a", 0.5, 0.25), LoraSpec("b", 0.7), LoraSpec("c", 1.0), LoraSpec("d", 0.3, 0.8),
                     LoraSpec("e", 1.0, 0.5), LoraSpec("f", 1.0, 0.0)]
    assert [spec.unet_strength for spec in loras] == [0.25, 0.7, 1.0, 0.8, 0.5, 0.0]
    for bad in ("<lora:a:x:1>", "<lora:a:1:y>", "<lora:a:speed=2>", "<lora:a:1:1:1:1>", "<lora:a:nan>"):
        with pytest.raises(RequestError, match="The LoRA tag"):
            parse_lora_tags(bad)


LONE = "a \ud800 fox \udfff at dusk"


def test_a_prompt_with_lone_surrogates_is_encoded_not_a_traceback():
    model = build_tiny("sd15")
    chunks = tokenize_chunks(LONE, model.tokenizer)
    assert chunks == tokenize_chunks("a \ufffd fox \ufffd at dusk", model.tokenizer)
    assert encode_prompt(model, LONE).hidden_states.shape[1] == 77
    assert tokenize_chunks("\ud83d\ude00", model.tokenizer) == tokenize_chunks("😀", model.tokenizer)  # a pair


def test_a_generation_with_lone_surrogates_finishes():
    events = run_events(Engine(FakeModels()), tiny_request(prompt=LONE, negative="\udc80"))
    assert isinstance(events[-1], Finished), events[-1]


# ---- embeddings a prompt names but this model cannot use -------------------------------------------


def test_embedding_notices_name_the_word_and_why():
    texts = ["a photo of XLStyle, embedding:missing", "embedding:sdstyle.pt, embedding:xlstyle"]
    notices = embedding_notices(texts, ["sdstyle"], ["sdstyle", "xlstyle"], "SD1.5")
    assert notices == [
        "No embedding named 'missing' was found in the model folders; 'embedding:missing' is read as plain text.",
        "The embedding 'xlstyle' is not for SD1.5 models; 'embedding:xlstyle' is read as plain text.",
    ]
    assert embedding_notices(["XLStyle portrait"], ["sdstyle"], ["sdstyle", "xlstyle"], "SD1.5") == [
        "The prompt word 'xlstyle' names an embedding for another model family, not SD1.5; it is read as plain text."]
    assert embedding_notices(["sdstyle, embedding:SDSTYLE"], ["sdstyle"], ["sdstyle"], "SD1.5") == []
    assert strip_embedding_syntax("embedding:sdstyle.pt, (embedding:x:1.2)") == "sdstyle, (x:1.2)"


class FamilyEmbeddings(FakeModels):
    """Serves embeddings by family, as ModelManager.embeddings does."""

    def __init__(self, by_family: dict[str, dict]):
        super().__init__()
        self.by_family = by_family

    def embeddings(self, family: str = ""):
        if family:
            return dict(self.by_family.get(family, {}))
        return {name: path for files in self.by_family.values() for name, path in files.items()}


def test_a_generation_tells_which_embedding_words_are_read_as_text(tmp_path):
    xl = write_safetensors(tmp_path / "xlstyle.safetensors", {"clip_l": torch.zeros(1, 32), "clip_g": torch.zeros(1, 32)})
    engine = Engine(FamilyEmbeddings({"sdxl": {"xlstyle": xl}}))
    events = run_events(engine, tiny_request(prompt="xlstyle cat", negative="embedding:nothing"))
    assert isinstance(events[-1], Finished)
    messages = [event.message for event in events if isinstance(event, Notice)]
    assert any("'xlstyle' names an embedding for another model family, not SD1.5" in m for m in messages)
    assert any("No embedding named 'nothing'" in m for m in messages)


def test_lone_surrogates_reach_the_flux_and_edit_encoders_as_replacement_characters():
    """The SD tokenizer path replaced them; FLUX's CLIP/T5 and the edit families' text kwargs did not."""
    from inference.api import GenerationRequest
    from inference.edit.run import prepare_text_kwargs
    from inference.edit.tiny import build_tiny_edit
    from inference.flow.prompt import encode_flow_prompts
    from tests.inference.flow.flow_helpers import tiny_flux

    flux = tiny_flux("dev")
    lone, clean = encode_flow_prompts(flux, [LONE, "a \ufffd fox \ufffd at dusk"])
    assert torch.equal(lone.hidden_states, clean.hidden_states) and torch.equal(lone.pooled, clean.pooled)
    edit = build_tiny_edit("ip2p")
    request = GenerationRequest(mode="edit", model="builtin:tiny-ip2p", prompt=LONE, negative="\udc80 blur")
    kwargs = prepare_text_kwargs(edit, request)
    assert (kwargs["prompt"], kwargs["negative_prompt"]) == ("a \ufffd fox \ufffd at dusk", "\ufffd blur")
