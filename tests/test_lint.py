"""The layering contracts (import-linter) and ruff are part of the test command."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    found = BIN / name
    return str(found) if found.exists() else (shutil.which(name) or name)


def test_import_contracts_hold():
    r = subprocess.run([_tool("lint-imports")], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_ruff_is_clean():
    r = subprocess.run([_tool("ruff"), "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


# Every source folder, and the tests (a name only a test uses still counts as used).
VULTURE_PATHS = ["canvas", "desktop", "inference", "resources", "scripts", "bench", "fuzz", "tests",
                 "vulture_allowlist.py"]


def test_no_unused_code_outside_the_allow_list():
    """vulture finds no unused function, class, method, variable or import; names used only by
    reflection (Qt overrides, fixtures) are listed, with the reason, in vulture_allowlist.py."""
    r = subprocess.run([_tool("vulture"), *VULTURE_PATHS, "--min-confidence", "60"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
