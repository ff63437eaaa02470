"""Names the unused-code check (vulture, run by tests/test_lint.py) must not report: each is used by
something vulture cannot see. Keep every entry commented with that reason; dead code is deleted, not
listed here."""

# ruff: noqa: B018, F821
# Qt calls these overrides of QGraphicsItem / QGraphicsView / QObject / QIconEngine itself.
_.paint
_.drawBackground
_.drawForeground
_.mouseMoveEvent
_.wheelEvent
_.eventFilter

# zipfile reads ZipInfo.external_attr (the members' file mode) when it writes the archive.
_.external_attr

# Parsed PNG facts kept in the header/info records (tests and the fuzz harness read them).
interlaced
file_bytes

# The FLUX components record, shared by the FLUX loaders and denoise loop (inference/flow) that
# other changes of issue 12/13 are adding; remove this line once they use it.
FlowModel
# inference/models.py is being split into a package concurrently; that change decides its fate.
default_hash_cache_file

# pytest fixtures used by name (a test asks for them as an argument) or for their effect only.
tmp_models
user_dirs
qloop
private_log_dir
# tests/conftest.py replaces these socket functions to block the network during tests.
_.gethostbyname
_.create_connection
# test_packaging's stand-in has PyInstaller's hook-utility signatures (called with these keywords).
on_error
excludes

# Facts every family entry declares (inference/families/entry.py) that no code path reads yet: which
# network each text encoder is, its token limit, which encoder gives the pooled embedding, and the
# VAE's downsampling. They are part of the entry so a family is described in one place; delete a line
# here as soon as code reads it, and the field itself if no family ever needs it.
_.architecture
_.max_tokens
_.pooled_from
_.scale_factor

# typing.Protocol: the structural type every backend (local engine, ComfyUI server, pool) fits.
Backend
# pytest reads these by name: a module-level mark list, and a fixture asked for as an argument.
pytestmark
deterministic_vae_encode
