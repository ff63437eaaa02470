"""Test-wide guards: offline, offscreen, and no socket may connect anywhere but loopback."""

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


# Loopback is the one place tests may connect to: the ComfyUI integration tests start a real server
# on 127.0.0.1. Everything else (other addresses, any DNS lookup of a name) stays blocked.
LOOPBACK_HOSTS = ("127.0.0.1", "::1")

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo
_real_create_connection = socket.create_connection


def is_loopback(address) -> bool:
    return isinstance(address, tuple) and bool(address) and address[0] in LOOPBACK_HOSTS


def _guarded(real):
    def connect(self, address, *args, **kwargs):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not is_loopback(address):
            raise NetworkBlocked(f"test tried to connect to {address!r}")
        return real(self, address, *args, **kwargs)

    return connect


def _no_dns(*args, **kwargs):
    raise NetworkBlocked(f"test tried a DNS lookup: {args[:2]!r}")


def _loopback_getaddrinfo(host, *args, **kwargs):
    if host in LOOPBACK_HOSTS:  # a literal address: resolving it asks no name server
        return _real_getaddrinfo(host, *args, **kwargs)
    return _no_dns(host, *args)


def _loopback_create_connection(address, *args, **kwargs):
    if is_loopback(address):
        return _real_create_connection(address, *args, **kwargs)
    return _no_dns(address)


socket.socket.connect = _guarded(_real_connect)
socket.socket.connect_ex = _guarded(_real_connect_ex)
socket.getaddrinfo = _loopback_getaddrinfo
socket.gethostbyname = _no_dns
socket.create_connection = _loopback_create_connection


@pytest.fixture
def tmp_models(tmp_path, monkeypatch):
    """An empty models folder that discovery uses instead of the user's."""
    d = tmp_path / "models"
    d.mkdir()
    monkeypatch.setenv("COLLAGEN_MODELS", str(d))
    return d
