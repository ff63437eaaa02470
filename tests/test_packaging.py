"""The frozen-build recipe (build.spec, packaging/) without building: seconds, not the 20-minute build.

build.spec runs here against a recording stand-in for PyInstaller, so a typo in it, a resource it would
miss, a Qt module the app starts importing that the spec excludes, or a metadata copy that would fail
shows up in the normal test run.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import subprocess
import sys
import types
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parent.parent
PACKAGING = ROOT / "packaging"
APP_PACKAGES = ("canvas", "desktop", "inference")


def load_module(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def config():
    return load_module("collagen_bundle_config", PACKAGING / "bundle_config.py")


class RecordedBuild:
    """Stand-ins for the names PyInstaller gives a spec file; they remember how they were called."""

    def __init__(self) -> None:
        self.calls: dict[str, tuple[tuple, dict]] = {}
        self.metadata: list[str] = []
        self.submodules: list[str] = []

    def recorder(self, name: str):
        def record(*args, **kwargs):
            self.calls[name] = (args, kwargs)
            # TOC entries as PyInstaller 6 makes them: (destination in the bundle, source, kind)
            return types.SimpleNamespace(
                binaries=[("torch/lib/libtorchbind_test.so", "x", "BINARY"), ("torch/lib/libc10.so", "x", "BINARY"),
                          ("torch/bin/test_jit", "x", "BINARY"), ("libcudart.so", "x", "BINARY")],
                datas=[("torch/test/Dict_test", "x", "DATA"), ("torch/bin/torch_shm_manager", "x", "DATA"),
                       ("resources/icons/add.svg", "x", "DATA")],
                pure=[], scripts=[])
        return record

    def copy_metadata(self, distribution):
        importlib.metadata.distribution(distribution)  # raises like PyInstaller's when not installed
        self.metadata.append(distribution)
        return [(f"{distribution}.dist-info", f"{distribution}.dist-info")]

    def collect_submodules(self, package, on_error="raise"):
        self.submodules.append(package)
        return [package]

    @staticmethod
    def collect_data_files(package, excludes=()):
        return []


@pytest.fixture(scope="module")
def spec_run():
    build = RecordedBuild()
    hooks = types.ModuleType("PyInstaller.utils.hooks")
    hooks.copy_metadata = build.copy_metadata
    hooks.collect_submodules = build.collect_submodules
    hooks.collect_data_files = build.collect_data_files
    fakes = {"PyInstaller": types.ModuleType("PyInstaller"),
             "PyInstaller.utils": types.ModuleType("PyInstaller.utils"),
             "PyInstaller.utils.hooks": hooks}
    saved_modules = {name: sys.modules.get(name) for name in [*fakes, "bundle_config"]}
    saved_path = list(sys.path)
    sys.modules.update(fakes)
    namespace = {"SPECPATH": str(ROOT), "__file__": str(ROOT / "build.spec"),
                 **{name: build.recorder(name) for name in ("Analysis", "PYZ", "EXE", "COLLECT")}}
    try:
        exec(compile((ROOT / "build.spec").read_text(), "build.spec", "exec"), namespace)
    finally:
        sys.path[:] = saved_path
        for name, module in saved_modules.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    return build, namespace


def test_spec_freezes_the_launcher_into_a_one_folder_collagen(spec_run, config):
    build, namespace = spec_run
    (scripts,), analysis = build.calls["Analysis"]
    assert scripts == [str(config.LAUNCHER_SCRIPT)]
    assert analysis["pathex"] == [str(ROOT)]
    assert analysis["runtime_hooks"] == [str(path) for path in config.RUNTIME_HOOKS]
    assert all(path.is_file() for path in config.RUNTIME_HOOKS)
    assert analysis["excludes"] == config.excluded_modules()
    _, exe = build.calls["EXE"]
    assert exe["name"] == "collagen" and exe["exclude_binaries"] is True  # one folder, not one file
    _, collect = build.calls["COLLECT"]
    assert collect["name"] == "collagen"
    assert [entry[0] for entry in namespace["a"].binaries] == ["torch/lib/libc10.so"]
    assert [entry[0] for entry in namespace["a"].datas] == ["torch/bin/torch_shm_manager", "resources/icons/add.svg"]


def test_dropped_files_are_torch_tests_and_host_leftovers_only(config):
    for dropped in ("torch/test/atest", "torch/bin/protoc", "torch/bin/test_api", "torch/lib/libjitbackend_test.so",
                    "libcudart.so"):
        assert config.is_dropped_file(dropped), dropped
    for kept in ("torch/bin/torch_shm_manager", "torch/bin/upgrader_models/x.ptl", "torch/lib/libtorch_cpu.so",
                 "torch/testing/_internal/logging_tensor.py", "torch/bin", "libQt6Core.so.6",
                 "nvidia/cuda_runtime/lib/libcudart.so.12", "resources/test/x.json"):
        assert not config.is_dropped_file(kept), kept


def test_spec_collects_app_packages_lazy_imports_and_metadata(spec_run, config):
    build, _ = spec_run
    for package in APP_PACKAGES + ("diffusers.models", "diffusers.schedulers", "transformers.models.clip"):
        assert package in build.submodules
    required = {"diffusers", "transformers", "torch", "tokenizers", "safetensors", "huggingface_hub",
                "accelerate", "peft", "numpy", "tqdm", "regex", "requests", "filelock", "packaging",
                "pyyaml", "psygnal", "importlib_metadata"}
    assert required <= set(build.metadata)


def test_spec_ships_every_resource_file(spec_run):
    build, _ = spec_run
    _, analysis = build.calls["Analysis"]
    shipped = {Path(source).relative_to(ROOT) for source, _ in analysis["datas"] if Path(source).is_absolute()}
    resources = {path.relative_to(ROOT) for path in (ROOT / "resources").rglob("*")
                 if path.is_file() and path.suffix not in (".py", ".pyc")}
    assert resources, "resources/ is empty"
    assert resources - shipped == set(), "files under resources/ that the frozen app would lack"
    for source, destination in analysis["datas"]:
        if Path(source).is_absolute():
            assert Path(source).parent.relative_to(ROOT) == Path(destination)


def test_bundle_and_wheel_ship_the_same_resources(config):
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    package_data = pyproject["tool"]["setuptools"]["package-data"]
    patterns = package_data.get("resources", []) + package_data.get("*", [])
    in_wheel = {path for pattern in patterns for path in (ROOT / "resources").glob(pattern)
                if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts}
    in_bundle = {Path(source) for source, _ in config.resource_datas()}
    assert in_bundle == in_wheel


def test_launcher_is_the_console_script(config):
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["collagen"] == config.ENTRY_POINT
    module, function = config.ENTRY_POINT.split(":")
    imports = [node for node in ast.walk(ast.parse(config.LAUNCHER_SCRIPT.read_text()))
               if isinstance(node, ast.ImportFrom)]
    assert any(node.module == module and [alias.name for alias in node.names] == [function] for node in imports)
    result = subprocess.run([sys.executable, str(config.LAUNCHER_SCRIPT), "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "--self-test" in result.stdout


def imported_modules(package: str) -> set[str]:
    names = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_the_app_imports_no_module_the_bundle_excludes(config):
    imported = set().union(*(imported_modules(package) for package in APP_PACKAGES))
    excluded = config.excluded_modules()
    clashes = sorted(name for name in imported
                     if any(name == ex or name.startswith(ex + ".") for ex in excluded))
    assert clashes == [], ("the app imports modules that build.spec leaves out; move them out of "
                           "packaging/bundle_config.py's exclusions: " + ", ".join(clashes))
    qt = {name.split(".")[1] for name in imported if name.startswith("PySide6.Qt")}
    assert qt <= set(config.USED_QT_MODULES), (
        f"new Qt modules {sorted(qt - set(config.USED_QT_MODULES))}: add them to USED_QT_MODULES")


def test_excluded_qt_modules_cover_the_heavy_ones(config):
    assert not set(config.USED_QT_MODULES) & set(config.UNUSED_QT_MODULES)
    for family in ("QtWebEngine", "QtQml", "QtQuick", "QtMultimedia", "Qt3D", "QtCharts",
                   "QtDataVisualization", "QtPdf", "QtPositioning", "QtSensors", "QtSerialPort",
                   "QtBluetooth", "QtNfc", "QtWebSockets", "QtDesigner"):
        assert any(name.startswith(family) for name in config.UNUSED_QT_MODULES), family


def test_unused_qt_binding_is_recognised(config):
    assert config.is_unused_qt_binding("PySide6/QtQml.abi3.so")
    assert config.is_unused_qt_binding("_internal/PySide6/QtWebEngineCore.abi3.so")
    assert not config.is_unused_qt_binding("PySide6/QtWidgets.abi3.so")
    assert not config.is_unused_qt_binding("PySide6/Qt/lib/libQt6DBus.so.6")  # a library, not a binding
    assert not config.is_unused_qt_binding("somewhere/QtQml.abi3.so")


def make_bundle(root: Path, files: dict[str, int]) -> Path:
    bundle = root / "collagen"
    for name, size in files.items():
        path = bundle / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\0" * size)
    return bundle


def test_bundle_report_sizes_and_qt_contents(tmp_path, capsys):
    report_module = load_module("collagen_bundle_report", PACKAGING / "bundle_report.py")
    bundle = make_bundle(tmp_path, {
        "collagen": 100,
        "_internal/torch/lib/libtorch_cpu.so": 5000,
        "_internal/torch/__init__.pyc": 500,
        "_internal/PySide6/QtCore.abi3.so": 300,
        "_internal/PySide6/Qt/lib/libQt6Core.so.6": 2000,
        "_internal/PySide6/Qt/plugins/platforms/libqoffscreen.so": 50,
        "_internal/base_library.zip": 1000,
    })
    report = report_module.inspect_bundle(bundle, top=2)
    assert report.total_bytes >= 8950
    assert [name for name, _ in report.largest] == ["torch", "PySide6"]
    assert report.largest[0][1] >= 5500
    assert report.qt_bindings == ["QtCore.abi3.so"]
    assert report.qt_libraries == ["libQt6Core.so.6"]
    assert report.qt_plugin_folders == ["platforms"]
    assert report.unwanted_bindings == []
    assert report_module.main([str(bundle)]) == 0
    assert "largest components" in capsys.readouterr().out

    make_bundle(tmp_path, {"_internal/PySide6/QtQuick.abi3.so": 10})
    assert report_module.main([str(bundle)]) == 1
    assert "QtQuick.abi3.so" in capsys.readouterr().out

    assert report_module.main([str(tmp_path / "missing")]) == 2
    assert "not a one-folder PyInstaller bundle" in capsys.readouterr().err


def test_no_network_helper_leaves_only_loopback():
    helper = PACKAGING / "no_network.sh"
    assert subprocess.run([str(helper)], capture_output=True).returncode == 2
    result = subprocess.run([str(helper), "cat", "/proc/net/dev"], capture_output=True, text=True, timeout=30)
    if result.returncode == 3:
        pytest.skip(result.stderr.strip())
    assert result.returncode == 0, result.stderr
    # /proc/net/dev lists the interfaces of the caller's network namespace after two header lines.
    interfaces = {line.split(":")[0].strip() for line in result.stdout.splitlines()[2:]}
    assert interfaces == {"lo"}
