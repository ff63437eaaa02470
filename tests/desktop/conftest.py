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
    asyncio.events._set_running_loop(None)  # plain asyncio.run() works again in the next test


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


class DialogSpy:
    """Records the message boxes the editor shows and answers them without blocking."""

    def __init__(self):
        self.shown: list[tuple[str, str]] = []  # (kind, text)
        self.question_answer = None  # a QMessageBox.StandardButton, or None for the default button

    def texts(self, kind: str | None = None) -> list[str]:
        return [text for k, text in self.shown if kind is None or k == kind]


@pytest.fixture
def dialog_spy(monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    spy = DialogSpy()

    def record(kind):
        def show(parent, title, text, *args, **kwargs):
            spy.shown.append((kind, text))
            if kind == "question":
                default = args[1] if len(args) > 1 else QMessageBox.StandardButton.No
                return spy.question_answer if spy.question_answer is not None else default
            return QMessageBox.StandardButton.Ok
        return show

    for kind in ("warning", "information", "critical", "question"):
        monkeypatch.setattr(QMessageBox, kind, staticmethod(record(kind)))
    return spy


@pytest.fixture
def make_editor(qapp, qloop, user_dirs, dialog_spy, qtbot):
    """Build (and afterwards close) editor windows around a given engine factory."""
    from desktop.app import build_editor

    made = []

    def make(engine_factory=None, show=True):
        from tests.desktop.fakes import FakeEngine

        editor = build_editor(qapp, engine_factory=engine_factory or FakeEngine)
        # The tests' canvas coordinates assume the desktop default size, whatever the offscreen
        # screen's size (a first start fits the window to a smaller screen).
        editor.window.resize(1440, 900)
        editor.autosave.start()
        made.append(editor)
        if show:
            editor.window.show()
            editor.window.activateWindow()
            qtbot.waitUntil(editor.window.isActiveWindow, timeout=5000)
        return editor

    yield make
    for editor in made:
        if editor.idle_collector is not None:  # start_editor's: back to CPython's own collections
            editor.idle_collector.remove()
        editor.window._closing = True  # no "save changes?" question at teardown
        editor.window.close()
        assert editor.worker.shutdown(timeout=10)
        editor.window.deleteLater()  # closed windows would otherwise be re-polished by every theme change
    qtbot.wait(1)
