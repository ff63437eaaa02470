"""No network: the editor starts, discovers models and generates without one connect or DNS lookup,
and the hub libraries are offline before they are first imported.

The scenario runs in a fresh interpreter whose `sitecustomize` installs an audit hook before any
project code: every `socket.connect` (to an internet address) and every name lookup is recorded
and refused, and the value of HF_HUB_OFFLINE is recorded at the moment huggingface_hub, diffusers
and transformers are first imported. Audit hooks see the C-level socket calls too, so nothing that
goes through Python's socket module (requests, httpx, urllib, huggingface_hub) can slip past.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fuzz.corpus import safetensors_bytes

REPO = Path(__file__).resolve().parents[2]

SITECUSTOMIZE = '''
import json, os, socket, sys

_REPORT = os.environ["COLLAGEN_NET_REPORT"]
_state = {"connects": [], "unix_connects": 0, "lookups": [], "offline_at_import": {}}
_WATCHED = ("huggingface_hub", "diffusers", "transformers")
_LOOKUPS = ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex", "socket.gethostbyaddr",
            "socket.getnameinfo")


class NetworkRefused(OSError):
    pass


def _save():
    with open(_REPORT, "w") as handle:
        json.dump(_state, handle)


def _hook(event, args):
    if event == "socket.connect":
        sock, address = args
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            _state["connects"].append(repr(address))
            _save()
            raise NetworkRefused(f"connect to {address!r} refused by the test")
        _state["unix_connects"] += 1
    elif event in _LOOKUPS:
        _state["lookups"].append(f"{event}{args[:2]!r}")
        _save()
        raise NetworkRefused(f"{event} refused by the test")
    elif event == "import" and args[0] in _WATCHED and args[0] not in _state["offline_at_import"]:
        _state["offline_at_import"][args[0]] = os.environ.get("HF_HUB_OFFLINE")


sys.addaudithook(_hook)
import atexit
atexit.register(_save)
'''

SCENARIO = '''
import asyncio, json, os, sys
from pathlib import Path

import desktop.app  # the editor's entry module: it makes the environment offline first
from PySide6.QtWidgets import QApplication
import qasync

from canvas.io.ora import save_ora
from canvas.model.document import Document, GenerationSettings

work = Path(sys.argv[1])
app = QApplication([])
loop = qasync.QEventLoop(app)
asyncio.set_event_loop(loop)
editor = desktop.app.build_editor(app, models_dir=str(work / "models"))
window = editor.window
window.show()
project = work / "tiny.ora"
save_ora(Document(64, 64, settings=GenerationSettings(model="builtin:tiny-sd15", prompt="a fox", steps=2, seed=3)),
         project)
result = {}


async def scenario():
    await window.refresh_models()
    result["discovered"] = [m.name for m in window.models.catalog.models]
    assert window.open_path(project, ask=False)
    job = window.controller.generate()
    await window.controller.wait_idle()
    result["job"] = job.state.value
    result["message"] = job.message
    result["images"] = [list(image.shape) for image in job.images]


loop.run_until_complete(asyncio.wait_for(scenario(), 240))
import huggingface_hub.constants
result["hf_hub_offline_constant"] = huggingface_hub.constants.HF_HUB_OFFLINE
editor.window._closing = True
window.close()
editor.worker.shutdown(10)
print("RESULT " + json.dumps(result))
'''


@pytest.mark.slow
def test_the_editor_starts_discovers_and_generates_with_no_network(tmp_path):
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
    models = tmp_path / "models" / "checkpoints"
    models.mkdir(parents=True)
    (models / "local-sd15.safetensors").write_bytes(safetensors_bytes({  # found from its header alone
        "model.diffusion_model.input_blocks.0.0.weight": ("F16", (320, 4, 3, 3)),
        "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": ("F16", (320, 768)),
        "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight": ("F16", (77, 768)),
        "first_stage_model.decoder.conv_in.weight": ("F16", (4, 4, 1, 1)),
    }))
    report = tmp_path / "network.json"
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("HF_", "TRANSFORMERS_", "DIFFUSERS_"))}  # the program must set these itself
    env.update(PYTHONPATH=os.pathsep.join([str(guard), str(REPO)]), COLLAGEN_NET_REPORT=str(report),
               QT_QPA_PLATFORM="offscreen", COLLAGEN_MODELS="", XDG_CONFIG_HOME=str(tmp_path / "config"),
               XDG_DATA_HOME=str(tmp_path / "data"), XDG_CACHE_HOME=str(tmp_path / "cache"),
               XDG_STATE_HOME=str(tmp_path / "state"), HOME=str(tmp_path / "home"), OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(SCENARIO), str(tmp_path)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=420)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.split("RESULT ", 1)[1])
    network = json.loads(report.read_text())

    assert network["connects"] == [] and network["lookups"] == []  # zero attempts, recorded by the audit hook
    assert set(network["offline_at_import"]) == {"huggingface_hub", "diffusers", "transformers"}
    assert set(network["offline_at_import"].values()) == {"1"}  # offline before each was first imported
    assert result["hf_hub_offline_constant"] is True
    assert "local-sd15" in result["discovered"] and "builtin:tiny-sd15" in result["discovered"]
    assert result["job"] == "finished", result["message"]
    assert result["images"] == [[64, 64, 3]]


def test_the_guard_catches_a_connect_and_a_lookup(tmp_path):
    """The same guard in a process that does try the network: both attempts are recorded and refused."""
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
    report = tmp_path / "network.json"
    probe = ("import socket\n"
             "for attempt in (lambda: socket.getaddrinfo('huggingface.co', 443),\n"
             "                lambda: socket.socket().connect(('192.0.2.1', 443))):\n"
             "    try: attempt()\n"
             "    except OSError as error: print(type(error).__name__)\n")
    env = {**os.environ, "PYTHONPATH": str(guard), "COLLAGEN_NET_REPORT": str(report)}
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["NetworkRefused", "NetworkRefused"], done.stderr
    network = json.loads(report.read_text())
    assert len(network["lookups"]) == 1 and "huggingface.co" in network["lookups"][0]
    assert network["connects"] == ["('192.0.2.1', 443)"]
