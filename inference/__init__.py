"""Collagen's inference engine: torch + diffusers, offline, never Qt.

Importing this package sets the hub's offline switches before diffusers or transformers can
be imported by anything below it, so no code path can reach a model hub.
"""

import os as _os

for _name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "DIFFUSERS_OFFLINE"):
    _os.environ[_name] = "1"
_os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
_os.environ.setdefault("DISABLE_TELEMETRY", "1")
