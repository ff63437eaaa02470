"""Transformer families on one flow-matching loop (FLUX.1 first; Z-Image, Qwen-Image, FLUX.2, Chroma next)."""
