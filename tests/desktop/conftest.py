"""Desktop test fixtures: a qasync loop over pytest-qt's QApplication, private user folders."""

from __future__ import annotations

import asyncio

import pytest


@pytest.fixture(scope="session")
def _session_qloop(qapp):
    import qasync

    loop = qasync.QEventLoop(qapp, already_running=True)
    asyncio.set_event_loop(loop)
    yield loop
    asyncio.events._set_running_loop(None)
    asyncio.set_event_loop(None)


@pytest.fixture
def qloop(_session_qloop, qtbot):
    """An asyncio loop driven by Qt's event processing (qtbot.wait / waitUntil run its callbacks).

    One qasync loop serves the whole session: a second QEventLoop over the same QApplication
    does not get its callbacks run once a first one was closed.
    """
    loop = _session_qloop
    asyncio.events._set_running_loop(loop)
    yield loop
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        qtbot.waitUntil(lambda: all(t.done() for t in pending), timeout=5000)


@pytest.fixture
def user_dirs(tmp_path, monkeypatch):
    """XDG folders of a fresh user: settings, autosaves and default models live under tmp_path."""
    home = tmp_path / "home"
    for name, sub in (("XDG_CONFIG_HOME", "config"), ("XDG_DATA_HOME", "data"), ("XDG_CACHE_HOME", "cache"),
                      ("XDG_STATE_HOME", "state")):
        folder = home / sub
        folder.mkdir(parents=True)
        monkeypatch.setenv(name, str(folder))
    monkeypatch.setenv("COLLAGEN_MODELS", "")
    return home
