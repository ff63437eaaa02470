"""Fuzzing the readers of untrusted files: .ora projects, PNG parameters, safetensors headers.

Each reader has a module with a dedicated long run (`python -m fuzz.ora --cases 10000`,
`python -m fuzz.png ...`, `python -m fuzz.safetensors ...`, `python -m fuzz.checkpoint ...`) and
a kill-while-saving run (`python -m fuzz.kill_save --trials 100`). Runs are seeded, so a failure
found once is found again with the same `--seed`; the regular test suite runs a few hundred cases
of each through the same code (tests/reliability/test_fuzz_*.py).

The property every run checks: whatever the bytes, the reader returns a sound result or raises
the project's own error type (ProjectError for projects and images, ModelError for model files).
Anything else escaping is a failure, saved with its input for replay (`--replay FILE`).
"""
