"""`python -m tests.reliability.open_editor PROJECT`: the editor (offscreen Qt) opens a project as it does
one named on its command line or chosen in File > Open, and the layers are drawn; for the crafted-file
cases to measure the editor's own answer.

The error dialog is answered by printing its sentence as one `error: ...` line (exit status 1); the
question "Open it anyway?" (a file that asks for more memory than its size allows) is answered No, as
a user would a file from elsewhere, and its first sentence printed the same way.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str]) -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import qInstallMessageHandler
    from PySide6.QtWidgets import QApplication

    from desktop import app as desktop_app
    from desktop import dialogs

    qInstallMessageHandler(lambda *_: None)  # the offscreen platform's notes are not the editor's answer
    errors: list[str] = []
    dialogs.show_error = lambda parent, message, title="": errors.append(str(message))

    def decline(parent, message, title=""):
        errors.append(str(message).split("\n\n")[0])
        return False

    dialogs.ask_yes_no = decline
    qapp = QApplication.instance() or QApplication(sys.argv[:1])
    editor = desktop_app.build_editor(qapp, engine_factory=lambda: None)  # no model stack: never generates
    window = editor.window
    try:
        window.show()
        opened = window.open_path(argv[0], ask=False)
        qapp.processEvents()
        window.grab()  # paint the canvas once, as the screen would show it
    finally:
        window.shutdown()
    if errors or not opened:
        print(f"error: {(errors or ['not opened'])[0]}", file=sys.stderr)
        return 1
    print(f"opened {len(window.document.layers)} layers")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
