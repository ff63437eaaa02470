"""PyInstaller runtime hook: the frozen Collagen never reaches a model hub.

desktop.cli sets the offline switches too, but only once it is imported; this runs before the first
import of anything, so no library can read the environment earlier.
"""

import os

# huggingface_hub reads these once, at import (huggingface_hub/constants.py).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
