"""What goes into the frozen Collagen bundle, as plain data that build.spec and the tests both read.

Kept free of PyInstaller imports so `tests/test_packaging.py` can check the lists without building.
This folder has no `__init__.py` on purpose: a regular package called `packaging` would shadow the
PyPI `packaging` library that transformers, PyInstaller and pip import.
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

APP_NAME = "collagen"
# The console script in pyproject.toml; the launcher calls the same function.
ENTRY_POINT = "desktop.cli:main"
LAUNCHER_SCRIPT = REPO_ROOT / "packaging" / "collagen_launcher.py"
# Runs inside the frozen app before any of its modules: the offline switches, whatever imports first.
RUNTIME_HOOKS = (REPO_ROOT / "packaging" / "hooks" / "pyi_rth_collagen_offline.py",)

# Our own packages: collected whole, because inference.sd.modes imports mode providers by name.
FIRST_PARTY_PACKAGES = ("canvas", "desktop", "inference")

# Files under resources/ that are not data: the package's own module and Python's caches.
RESOURCE_SKIPPED_SUFFIXES = (".py", ".pyc")

# Distributions whose metadata is read at run time (importlib.metadata.version / requires checks in
# diffusers.utils.import_utils, transformers.dependency_versions_check, accelerate, peft, torch).
METADATA_PACKAGES = (
    "accelerate",
    "diffusers",
    "filelock",
    "fsspec",
    "huggingface_hub",
    "importlib_metadata",
    "numpy",
    "packaging",
    "peft",
    "pillow",
    "psutil",
    "psygnal",
    "pyyaml",
    "qasync",
    "regex",
    "requests",
    "safetensors",
    "scipy",
    "tokenizers",
    "torch",
    "torchsde",
    "tqdm",
    "transformers",
    "typing_extensions",
)

# Libraries imported lazily by name (diffusers' and transformers' _LazyModule, from_pretrained
# resolving component classes), which PyInstaller's import scan cannot follow.
LAZY_IMPORT_PACKAGES = (
    "diffusers.models",
    "diffusers.schedulers",
    "diffusers.loaders",
    "diffusers.pipelines.stable_diffusion",
    "diffusers.pipelines.stable_diffusion_xl",
    "diffusers.pipelines.flux",
    "diffusers.pipelines.qwenimage",
    "transformers.models.clip",
    "transformers.models.t5",
    "transformers.models.qwen2",
    "transformers.models.qwen2_vl",
    "transformers.models.qwen2_5_vl",
    "torchsde",
    "peft",
)

# Qt modules the editor never uses (it needs QtCore, QtGui, QtWidgets, QtSvg). Excluding the Python
# modules also keeps their Qt libraries, plugins and QML files out of the bundle.
UNUSED_QT_MODULES = (
    "Qt3DAnimation", "Qt3DCore", "Qt3DExtras", "Qt3DInput", "Qt3DLogic", "Qt3DRender",
    "QtAxContainer", "QtBluetooth", "QtCharts", "QtConcurrent", "QtDataVisualization", "QtDBus",
    "QtDesigner", "QtGraphs", "QtGraphsWidgets", "QtHelp", "QtHttpServer", "QtLabsStyleKit",
    "QtLocation", "QtMultimedia", "QtMultimediaWidgets", "QtNetwork", "QtNetworkAuth", "QtNfc",
    "QtOpenGL", "QtOpenGLWidgets", "QtPdf", "QtPdfWidgets", "QtPositioning", "QtPrintSupport",
    "QtQml", "QtQmlFeatures", "QtQuick", "QtQuick3D", "QtQuickControls2", "QtQuickTest",
    "QtQuickWidgets", "QtRemoteObjects", "QtScxml", "QtSensors", "QtSerialBus", "QtSerialPort",
    "QtSpatialAudio", "QtSql", "QtStateMachine", "QtSvgWidgets", "QtTest", "QtTextToSpeech",
    "QtUiTools", "QtWebChannel", "QtWebEngineCore", "QtWebEngineQuick", "QtWebEngineWidgets",
    "QtWebSockets", "QtWebView", "QtXml",
)

# Qt modules the editor imports; the tests check UNUSED_QT_MODULES never overlaps them.
USED_QT_MODULES = ("QtCore", "QtGui", "QtWidgets", "QtSvg")

# Python packages that are development tools, test suites or other GUI toolkits.
EXCLUDED_PACKAGES = (
    "IPython",
    "PyQt5",
    "PyQt6",
    "PySide2",
    "_pytest",
    "hypothesis",
    "importlinter",
    "grimp",
    "jedi",
    "matplotlib",
    "notebook",
    "pytest",
    "pytestqt",
    "ruff",
    "sphinx",
    "tests",
    "tkinter",
    "_tkinter",
    # Not torch.testing._internal: torch.utils.checkpoint imports its logging_tensor at run time.
    "torch.utils.tensorboard",
    "torch._dynamo.test_case",
    "torch._inductor.test_case",
)

# Files of the torch wheel that only torch's own C++ test suite uses: test libraries in torch/lib, the
# gtest binaries in torch/test and torch/bin (~130 MB), protoc. torch_shm_manager stays (DataLoader
# workers share memory through it), and so do the TorchScript upgraders.
TORCH_TEST_LIBRARIES = (
    "libaoti_custom_ops.so",
    "libbackend_with_compiler.so",
    "libjitbackend_test.so",
    "libtorchbind_test.so",
)
TORCH_BIN_KEPT = ("torch_shm_manager", "upgrader_models")
# Found on the build machine through a ctypes name in torch.cuda; the CPU build never loads it, and a
# CUDA build brings its own from the nvidia-* wheels.
HOST_LIBRARIES_DROPPED = ("libcudart.so",)


def excluded_modules() -> list[str]:
    """Module names for PyInstaller's `excludes`."""
    return [f"PySide6.{name}" for name in UNUSED_QT_MODULES] + list(EXCLUDED_PACKAGES)


def resource_datas() -> list[tuple[str, str]]:
    """(source file, destination folder) pairs for the data files under resources/ (tokenizer, model
    configs, samples, icons, themes), like the wheel's package data. They land in _internal/resources/,
    where importlib.resources.files("resources") and Path(inference.__file__).parent.parent look."""
    pairs = []
    for path in sorted((REPO_ROOT / "resources").rglob("*")):
        if path.is_file() and path.suffix not in RESOURCE_SKIPPED_SUFFIXES and "__pycache__" not in path.parts:
            pairs.append((str(path), str(path.parent.relative_to(REPO_ROOT))))
    return pairs


def is_dropped_file(destination: str) -> bool:
    """Whether a collected file (by its place in the bundle) is left out: torch tests, host leftovers."""
    parts = Path(destination).parts
    if len(parts) == 1:
        return parts[0] in HOST_LIBRARIES_DROPPED
    if parts[0] != "torch":
        return False
    if parts[1] == "test":
        return True
    if parts[1] == "bin":
        return len(parts) > 2 and parts[2] not in TORCH_BIN_KEPT
    return parts[1] == "lib" and parts[-1] in TORCH_TEST_LIBRARIES


def is_unused_qt_binding(destination: str) -> bool:
    """Whether a collected file is the Python binding of an excluded Qt module (PySide6/QtQml.abi3.so).

    Qt's own libraries are left to PyInstaller's dependency analysis: the xcb platform plugin, for
    one, links libQt6DBus, so a library can be present without its Python module.
    """
    path = Path(destination)
    if path.parent.name != "PySide6":
        return False
    return path.name.split(".")[0] in UNUSED_QT_MODULES
