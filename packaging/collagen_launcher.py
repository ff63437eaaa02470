"""Entry script of the frozen build: the same `collagen` command as the console script desktop.cli:main."""

import multiprocessing
import sys

if __name__ == "__main__":
    # A frozen executable re-runs itself for multiprocessing children; this routes them correctly.
    multiprocessing.freeze_support()
    from desktop.cli import main

    sys.exit(main())
