"""Size and contents of a built bundle: total, the ten largest components, the Qt parts present.

    python packaging/bundle_report.py [dist/collagen]

Exits 1 when the bundle holds the Python binding of a Qt module that build.spec excludes, so the
smoke test notices when an import starts pulling one back in.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bundle_config  # noqa: E402


@dataclass
class BundleReport:
    total_bytes: int
    largest: list[tuple[str, int]]
    qt_bindings: list[str]
    qt_libraries: list[str]
    qt_plugin_folders: list[str]
    unwanted_bindings: list[str] = field(default_factory=list)


def tree_size(path: Path) -> int:
    """Bytes on disk below path, counting links as links (PyInstaller makes a few)."""
    if path.is_symlink() or not path.is_dir():
        return path.lstat().st_size
    return sum(tree_size(child) for child in path.iterdir())


def inspect_bundle(bundle: Path, top: int = 10) -> BundleReport:
    internal = bundle / "_internal"
    if not internal.is_dir():
        raise FileNotFoundError(f"{bundle}: not a one-folder PyInstaller bundle (no _internal folder)")
    components = sorted(((entry.name, tree_size(entry)) for entry in internal.iterdir()),
                        key=lambda item: item[1], reverse=True)
    pyside = internal / "PySide6"
    bindings = sorted(p.name for p in pyside.glob("Qt*.so")) if pyside.is_dir() else []
    libraries = sorted(p.name for p in (pyside / "Qt" / "lib").glob("libQt6*")) if pyside.is_dir() else []
    plugins_dir = pyside / "Qt" / "plugins"
    plugin_folders = sorted(p.name for p in plugins_dir.iterdir()) if plugins_dir.is_dir() else []
    unwanted = [name for name in bindings if bundle_config.is_unused_qt_binding(f"PySide6/{name}")]
    return BundleReport(
        total_bytes=tree_size(bundle),
        largest=components[:top],
        qt_bindings=bindings,
        qt_libraries=libraries,
        qt_plugin_folders=plugin_folders,
        unwanted_bindings=unwanted,
    )


def mebibytes(size: int) -> str:
    return f"{size / 2**20:,.1f} MiB"


def format_report(bundle: Path, report: BundleReport) -> str:
    lines = [f"bundle {bundle}: {mebibytes(report.total_bytes)}", "", "largest components of _internal:"]
    lines += [f"  {mebibytes(size):>12}  {name}" for name, size in report.largest]
    lines += ["", "PySide6 bindings: " + ", ".join(name.split(".")[0] for name in report.qt_bindings)]
    lines += ["Qt libraries: " + ", ".join(report.qt_libraries)]
    lines += ["Qt plugin folders: " + ", ".join(report.qt_plugin_folders)]
    if report.unwanted_bindings:
        lines += ["", "excluded Qt modules found in the bundle: " + ", ".join(report.unwanted_bindings)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", nargs="?", type=Path, default=bundle_config.REPO_ROOT / "dist" / "collagen")
    args = parser.parse_args(argv)
    try:
        report = inspect_bundle(args.bundle)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_report(args.bundle, report))
    return 1 if report.unwanted_bindings else 0


if __name__ == "__main__":
    raise SystemExit(main())
