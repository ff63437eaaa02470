"""Data files shipped with Collagen (tokenizer, model configs, samples, icons)."""
