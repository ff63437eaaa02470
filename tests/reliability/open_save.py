"""`python -m tests.reliability.open_save PROJECT OUT`: open a project and save it again, as the editor's
File > Open and Save do (canvas.io's load_ora and save_ora), for the crafted-file cases to measure.

A refusal is one `error: ...` line on stderr and exit status 1, as the command line answers.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    from canvas.io.errors import ProjectError
    from canvas.io.ora import load_ora, save_ora
    from canvas.model.document import DocumentError

    try:
        document = load_ora(argv[0])
        save_ora(document, argv[1])
    except (ProjectError, DocumentError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"saved {len(document)} layers")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
