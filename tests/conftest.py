"""Test-wide guards: offline, offscreen, and no socket may connect anywhere."""

from __future__ import annotations

import os
import socket
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("COLLAGEN_MODELS", "")  # never pick up a user's model folders by accident
# The app and CLI keep their model-hash cache in the user cache folder: tests get a folder of their own.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="collagen-test-cache-")

import pytest  # noqa: E402


class NetworkBlocked(RuntimeError):
    pass


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _guarded(real):
    def connect(self, address, *args, **kwargs):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            raise NetworkBlocked(f"test tried to connect to {address!r}")
        return real(self, address, *args, **kwargs)

    return connect


def _no_dns(*args, **kwargs):
    raise NetworkBlocked(f"test tried a DNS lookup: {args[:2]!r}")


socket.socket.connect = _guarded(_real_connect)
socket.socket.connect_ex = _guarded(_real_connect_ex)
socket.getaddrinfo = _no_dns
socket.gethostbyname = _no_dns
socket.create_connection = lambda *a, **k: _no_dns(*a)


@pytest.fixture
def tmp_models(tmp_path, monkeypatch):
    """An empty models folder that discovery uses instead of the user's."""
    d = tmp_path / "models"
    d.mkdir()
    monkeypatch.setenv("COLLAGEN_MODELS", str(d))
    return d
