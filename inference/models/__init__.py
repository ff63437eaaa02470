"""Local models: where they are, what they are, and loading them offline.

Discovery (SPEC §6) looks in the folders given on the command line, `COLLAGEN_MODELS`, the settings
file and the default folder, understands the A1111 and ComfyUI layouts (and a flat folder, and
ComfyUI's extra_model_paths.yaml), and tells a model's family from the safetensors header alone
(asking the family registry, inference.families): no weights are read until a model is loaded.
Loading never reaches a hub: single files load with the config folders shipped in
resources/configs, diffusers folders with local_files_only=True.

- folders.py: where to look (settings, environment, extra_model_paths.yaml)
- weights.py: safe weight reading (safetensors, `weights_only` pickles), tensor shapes
- detect.py: what a file is (checkpoint of which family, LoRA, VAE, embedding)
- discovery.py: one scan of the folders into a catalog
- hashes.py: A1111 short hashes, cached on disk
- configs.py, single_file.py, diffusers_folder.py: loading UNet-family checkpoints
- device.py: device and dtype choice
- manager.py: ModelManager, which finds models and keeps one loaded

torch and diffusers are imported inside the functions that need them, so the GUI can import this
package (to list models) before the model stack is loaded.
"""

from inference.families.foreign import UNSUPPORTED_PIPELINES
from inference.families.sd import (
    SD15_CLIP_PREFIX,
    SDXL_CLIP_G_PREFIX,
    SDXL_CLIP_L_PREFIX,
    UNET_PREFIX,
    VAE_PREFIX,
)
from inference.models.configs import (
    bundled_config_root,
    config_folder_for,
    load_clip_tokenizer,
    shipped_tokenizer_folder,
)
from inference.models.detect import (
    CLIP_WIDTHS,
    CheckpointKind,
    classify_weights,
    detect_checkpoint_family,
    diffusers_folder_family,
    embedding_family,
    lora_family,
)
from inference.models.device import choose_device, choose_dtype
from inference.models.diffusers_folder import load_diffusers_folder
from inference.models.discovery import (
    ASSET_KINDS,
    BUILTIN_MODELS,
    MAX_SCAN_DEPTH,
    WEIGHT_SUFFIXES,
    ModelCatalog,
    builtin_models,
)
from inference.models.folders import (
    APP_NAME,
    ENV_MODELS,
    EXTRA_PATHS_KINDS,
    LAYOUT_FOLDERS,
    SETTINGS_KEY_EXTRA_PATHS,
    SETTINGS_KEY_FOLDERS,
    ModelFolders,
    default_hash_cache_file,
    default_models_folder,
    default_settings_file,
    find_model_folders,
    import_extra_model_paths,
)
from inference.models.hashes import ModelHashes
from inference.models.manager import ModelManager
from inference.models.single_file import load_single_file, load_vae_file
from inference.models.weights import load_pickled_weights, load_weights_only, read_weight_shapes

__all__ = [
    "APP_NAME",
    "ASSET_KINDS",
    "BUILTIN_MODELS",
    "CLIP_WIDTHS",
    "ENV_MODELS",
    "EXTRA_PATHS_KINDS",
    "LAYOUT_FOLDERS",
    "MAX_SCAN_DEPTH",
    "SD15_CLIP_PREFIX",
    "SDXL_CLIP_G_PREFIX",
    "SDXL_CLIP_L_PREFIX",
    "SETTINGS_KEY_EXTRA_PATHS",
    "SETTINGS_KEY_FOLDERS",
    "UNET_PREFIX",
    "UNSUPPORTED_PIPELINES",
    "VAE_PREFIX",
    "WEIGHT_SUFFIXES",
    "CheckpointKind",
    "ModelCatalog",
    "ModelFolders",
    "ModelHashes",
    "ModelManager",
    "builtin_models",
    "bundled_config_root",
    "choose_device",
    "choose_dtype",
    "classify_weights",
    "config_folder_for",
    "default_hash_cache_file",
    "default_models_folder",
    "default_settings_file",
    "detect_checkpoint_family",
    "diffusers_folder_family",
    "embedding_family",
    "find_model_folders",
    "import_extra_model_paths",
    "load_clip_tokenizer",
    "load_diffusers_folder",
    "load_pickled_weights",
    "load_single_file",
    "load_vae_file",
    "load_weights_only",
    "lora_family",
    "read_weight_shapes",
    "shipped_tokenizer_folder",
]
