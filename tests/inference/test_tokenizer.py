"""The CLIP tokenizer files shipped in resources/tokenizer (generated from open_clip's BPE file)."""

from pathlib import Path

from transformers import CLIPTokenizer

from scripts.make_tokenizer import bytes_to_unicode

TOKENIZER = Path(__file__).resolve().parents[2] / "resources" / "tokenizer"


def load() -> CLIPTokenizer:
    return CLIPTokenizer(str(TOKENIZER / "vocab.json"), str(TOKENIZER / "merges.txt"))


def test_a_photo_of_a_cat():
    assert load()("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]


def test_vocabulary_layout_matches_clip():
    tok = load()
    assert len(tok) == 49408
    assert tok.convert_tokens_to_ids(["<|startoftext|>", "<|endoftext|>"]) == [49406, 49407]
    byte_tokens = list(bytes_to_unicode().values())
    assert tok.convert_tokens_to_ids(byte_tokens[:3]) == [0, 1, 2]
    assert tok.convert_tokens_to_ids([byte_tokens[0] + "</w>"]) == [256]


def test_licence_is_recorded():
    text = (TOKENIZER / "LICENSE-open_clip.txt").read_text()
    assert "bpe_simple_vocab_16e6.txt.gz" in text and "Permission is hereby granted" in text
