"""The model manager: finds models (discovery, paths) and keeps one loaded, freeing the last first.

What each family is and how it loads is its registry entry (inference.families); the manager picks
the loader for the file's format and keeps the result until another model is asked for.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from inference.api import ModelError, ModelInfo
from inference.asset_names import bare_name, match_asset
from inference.bounded_read import open_regular
from inference.components import SDModel
from inference.families import FAMILIES, FamilyRegistry
from inference.families.sd import VAE_PREFIX
from inference.models.configs import config_folder_for
from inference.models.detect import detect_checkpoint_family, diffusers_folder_family, json_value
from inference.models.device import choose_device, choose_dtype
from inference.models.diffusers_folder import load_diffusers_folder
from inference.models.discovery import ASSET_KINDS, ModelCatalog, Scanner, with_family_facts
from inference.models.folders import ModelFolders, find_model_folders
from inference.models.hashes import ModelHashes
from inference.models.single_file import load_single_file, load_vae_file, load_vae_from_part, wrap_load_errors
from inference.models.weights import CheckpointWeights, read_weight_shapes


class ModelManager:
    """Finds models and keeps one loaded; switching models frees the previous one first.

    `folders`: a ModelFolders, a list of roots, or None for the usual sources (find_model_folders()).
    `config_root`: where the sd15/sdxl(-inpaint) config folders are (default: the bundled ones).
    `hash_cache_file`: where model hashes persist between runs (None: hashed again every run).
    `families`: the family registry detection and loading ask (the default holds every family).
    `loaders`: loop name -> `loader(manager, info, vae_info)` for families this layer cannot build
    itself (FLUX's loaders live in inference.flow, above it); the engine adds its loops' loaders, so
    `load` stays the one way to a model whatever its family.
    """

    def __init__(
        self,
        folders: ModelFolders | Iterable[str | os.PathLike] | None = None,
        *,
        config_root: Path | None = None,
        device: str | None = None,
        dtype: Any = None,
        prefer_bf16: bool = False,
        hash_cache_file: Path | None = None,
        families: FamilyRegistry = FAMILIES,
        loaders: Mapping[str, Callable] | None = None,
    ):
        if folders is None:
            folders = find_model_folders()
        elif not isinstance(folders, ModelFolders):
            folders = ModelFolders(roots=[Path(p) for p in folders])
        self.folders = folders
        self.config_root = config_root
        self._device = device
        self._dtype = dtype
        self.prefer_bf16 = prefer_bf16
        self.hashes = ModelHashes(hash_cache_file)
        self.families = families
        self.loaders: dict[str, Callable] = dict(loaders or {})
        self._catalog: ModelCatalog | None = None
        self._detection_cache: dict = {}
        self._loaded_key: tuple | None = None
        self._loaded: Any = None

    # -- discovery

    def discover(self) -> list[ModelInfo]:
        """Scan the folders again; returns the runnable models (built-ins first). Never raises for a bad file."""
        scanner = Scanner(self._detection_cache, self.families)
        for root in self.folders.roots:
            scanner.scan_root(root)
        for kind, kind_folders in self.folders.typed.items():
            for folder in kind_folders:
                scanner.scan_kind_folder(kind, folder)
        self._catalog = scanner.catalog
        with_family_facts(self._catalog.models, self.families)
        return list(self._catalog.models)

    @property
    def catalog(self) -> ModelCatalog:
        if self._catalog is None:
            self.discover()
        return self._catalog

    def find(self, name_or_path: str) -> ModelInfo:
        """A model by discovered name, builtin name, or path to a file / diffusers folder."""
        for info in self.catalog.models:
            if name_or_path in (info.name, info.path):
                return info
        path = Path(name_or_path).expanduser()
        if path.is_dir() and (path / "model_index.json").is_file():
            family, kind = diffusers_folder_family(path, self.families)
            inpaint = json_value(path / "unet" / "config.json", "in_channels") == 9
            return ModelInfo(path.name, str(path.resolve()), family, kind, {"format": "diffusers", "inpaint": inpaint})
        if path.is_file():
            detected = detect_checkpoint_family(path, read_weight_shapes(path), self.families)
            kind = "inpaint" if detected.inpaint else "checkpoint"
            return ModelInfo(path.stem, str(path.resolve()), detected.family, kind,
                             {"format": "single-file", "inpaint": detected.inpaint})
        if path.exists():  # a FIFO, a device, a socket: say what it is
            open_regular(path, what="model file").close()
        self._refuse_skipped(name_or_path)
        raise ModelError(f"No model named {name_or_path!r} was found in the model folders, and it is not a file.")

    def _refuse_skipped(self, name_or_path: str) -> None:
        """Asking for a file discovery skipped says why it was skipped, not 'not found'."""
        skipped = self.catalog.skipped_named(name_or_path)
        if skipped is not None:
            raise ModelError(f"{name_or_path!r} was found but skipped: {skipped}")

    def find_asset(self, kind: str, name_or_path: str) -> ModelInfo:
        """A LoRA / VAE / embedding / TAESD decoder by discovered name or path."""
        if kind not in ASSET_KINDS:
            raise ModelError(f"Unknown kind of model file {kind!r}.")
        infos = list(self.catalog.of_kind(kind))
        for info in infos:
            if name_or_path in (info.name, info.path):
                return info
        if kind in ("lora", "embedding"):  # A1111's rule: a file in a sub-folder by its bare name
            matched = match_asset(name_or_path, [info.name for info in infos])
            if matched is not None:
                return next(info for info in infos if info.name == matched)
        path = Path(name_or_path).expanduser()
        if path.exists():
            if not path.is_dir():
                open_regular(path, what=f"{kind} file").close()  # a FIFO or device: refused, not waited on
            return ModelInfo(path.stem, str(path.resolve()), "", kind)
        self._refuse_skipped(name_or_path)
        raise ModelError(f"No {kind} named {name_or_path!r} was found in the model folders, and it is not a file.")

    def lora_path(self, name: str) -> Path:
        """The LoRA file a prompt's `<lora:name:w>` or the LoRA list means (a discovered name or a path)."""
        return Path(self.find_asset("lora", name).path)

    def embeddings(self, family: str = "") -> dict[str, Path]:
        """Name -> file of discovered textual-inversion embeddings (those that may fit `family` when given)."""
        if family:
            return self.embedding_files(family)
        return _with_bare_names({info.name: Path(info.path) for info in self.catalog.embeddings})

    def taesd_decoder(self, family: str) -> Path | None:
        """The TAESD decoder found in vae_approx/ for this family's latents (taesd / taesdxl / taef1_decoder), if any.

        A decoder is listed under one family of its latent space (taef1: flux-dev) and serves every
        family with that latent format (schnell, Fill, Kontext)."""
        entry = self.families.find(family)
        for info in self.catalog.taesd:
            other = self.families.find(info.family)
            if info.family == family or (entry is not None and other is not None and other.latent == entry.latent):
                return Path(info.path)
        return None

    def embedding_files(self, family: str) -> dict[str, Path]:
        """Name -> file of the discovered embeddings that may fit `family` (unknown family: let loading tell)."""
        return _with_bare_names({info.name: Path(info.path) for info in self.catalog.embeddings
                                 if info.family in ("", family)})

    # -- device

    @property
    def device(self) -> str:
        if self._device is None:
            self._device = choose_device()
        return self._device

    @property
    def dtype(self):
        if self._dtype is None:
            self._dtype = choose_dtype(self.device, self.prefer_bf16)
        return self._dtype

    # -- loading

    def load(self, name_or_path: str, vae: str | None = None):
        """The model ready to run (an SDModel, or what its loop's loader makes); the same (model, vae) is cached."""
        info = self.find(name_or_path)
        entry = self.families.get(info.family)
        if entry.loop == "edit":
            raise ModelError(f"{info.name} is an instruction-edit model; it runs through the edit pipeline.")
        vae_info = self.find_asset("vae", vae) if vae else self._paired_vae(info)
        if entry.loop != "sd":
            return self._load_with_loader(entry.loop, entry.label, info, vae_info)
        key = ("sd", info.path, vae_info.path if vae_info else None)
        if self._loaded_key == key:
            return self._loaded
        if self._loaded_key is not None and self._loaded_key[:2] == key[:2] and info.kind != "builtin":
            return self._swap_vae(info, vae_info, key)
        self.unload()
        model = wrap_load_errors(Path(info.path), f"an {info.family} model", lambda: self._load_sd(info, vae_info))
        self._loaded_key, self._loaded = key, model
        return model

    def _paired_vae(self, info: ModelInfo) -> ModelInfo | None:
        """The `name.vae.safetensors` beside a checkpoint (A1111), used when the user picked no other VAE."""
        paired = info.extra.get("paired_vae")
        if not paired:
            return None
        path = Path(paired)
        name = next((vae.name for vae in self.catalog.vaes if vae.path == paired), path.name)
        return ModelInfo(name, paired, "", "vae", {"paired_with": info.name})

    def _load_with_loader(self, loop: str, label: str, info: ModelInfo, vae_info: ModelInfo | None):
        key = (loop, info.path, vae_info.path if vae_info else None)
        if self._loaded_key == key:
            return self._loaded
        loader = self.loaders.get(loop)
        if loader is None:
            raise ModelError(f"{info.name} is a {label} model, and no loader for it was given to the model manager.")
        self.unload()
        model = wrap_load_errors(Path(info.path), f"a {label} model", lambda: loader(self, info, vae_info))
        self._loaded_key, self._loaded = key, model
        return model

    def _swap_vae(self, info: ModelInfo, vae_info: ModelInfo | None, key: tuple) -> SDModel:
        """Only the VAE changed: load that one (a few hundred MB) instead of the whole model again.

        The new VAE loads before the old one is dropped, so a bad VAE file leaves the model as it was.
        """
        model: SDModel = self._loaded
        if vae_info is None:
            path = Path(info.path)
            vae = wrap_load_errors(path, "the model's own VAE", lambda: self._load_own_vae(info))
        else:
            path = Path(vae_info.path)
            vae = wrap_load_errors(path, "a VAE", lambda: self._load_vae_file(info, vae_info))
        model.vae = vae.eval().requires_grad_(False)
        if vae_info is None:
            model.extra.pop("vae", None)
        else:
            model.extra["vae"] = vae_info.name
        model.extra["vae_note"] = _paired_note(vae_info)
        self._loaded_key = key
        gc.collect()
        return model

    def load_edit_pipeline(self, name_or_path: str):
        """An instruction-edit diffusers pipeline (InstructPix2Pix, Kontext, Qwen edit) from its local folder."""
        info = self.find(name_or_path)
        if info.kind != "edit":
            raise ModelError(f"{info.name} is not an instruction-edit model.")
        key = ("edit", info.path, None)
        if self._loaded_key == key:
            return self._loaded
        self.unload()

        def load():
            # inference.edit plans placement (GPU, CPU offload, or a clear refusal) from free memory.
            from inference.edit import load_edit_model

            # dtype None: bf16 on GPU, fp32 on CPU (the edit models' own choice)
            return load_edit_model(Path(info.path), info.family, self.device, self._dtype, name=info.name)

        pipeline = wrap_load_errors(Path(info.path), "an instruction-edit model", load)
        self._loaded_key, self._loaded = key, pipeline
        return pipeline

    def unload(self) -> None:
        """Drop the loaded model and give its memory back before the next one loads."""
        if self._loaded is None:
            return
        self._loaded_key, self._loaded = None, None
        gc.collect()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def model_hash(self, path: str | os.PathLike) -> str:
        return self.hashes.short_hash(path)

    def _load_sd(self, info: ModelInfo, vae_info: ModelInfo | None) -> SDModel:
        if info.kind == "builtin":
            model = self._load_builtin(info)
        else:
            path = Path(info.path)
            inpaint = bool(info.extra.get("inpaint"))
            options = dict(device=self.device, dtype=self.dtype, load_vae=vae_info is None)
            if path.is_dir():
                parts = load_diffusers_folder(path, info.family, families=self.families, **options)
                model_hash = ""
            else:
                parts = load_single_file(
                    path, info.family, inpaint, config_root=self.config_root, families=self.families, **options
                )
                model_hash = self.model_hash(path)
            notes = parts.pop("notes", [])
            for module in parts.values():
                if hasattr(module, "requires_grad_"):
                    module.eval().requires_grad_(False)
            model = SDModel(
                name=info.name,
                family=info.family,
                model_hash=model_hash,
                device=self.device,
                dtype=self.dtype,
                vae=parts.get("vae"),
                **{k: v for k, v in parts.items() if k != "vae"},
            )
            if notes:
                model.extra["notes"] = list(notes)
        if vae_info is not None:
            vae = wrap_load_errors(Path(vae_info.path), "a VAE", lambda: self._load_vae_file(info, vae_info))
            model.vae = vae.eval().requires_grad_(False)
            model.extra["vae"] = vae_info.name
            model.extra["vae_note"] = _paired_note(vae_info)
        return model

    def _load_vae_file(self, info: ModelInfo, vae_info: ModelInfo):
        return load_vae_file(
            Path(vae_info.path), info.family, device=self.device, dtype=self.dtype, config_root=self.config_root
        )

    def _load_own_vae(self, info: ModelInfo):
        path = Path(info.path)
        if path.is_dir():
            return load_vae_file(path, info.family, device=self.device, dtype=self.dtype)
        part = CheckpointWeights(path).part(VAE_PREFIX)
        if not part:
            raise ModelError(f"{path}: the checkpoint has no VAE inside; choose a separate VAE file for it.")
        config_folder = config_folder_for(info.family, bool(info.extra.get("inpaint")), self.config_root)
        return load_vae_from_part(part, path, config_folder, self.device, self.dtype)

    def _load_builtin(self, info: ModelInfo) -> SDModel:
        from inference.tiny import build_tiny

        model = build_tiny(info.family, inpaint=bool(info.extra.get("inpaint")))
        if (self.device, self.dtype) != (model.device, model.dtype):
            for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
                module = getattr(model, name)
                if module is not None:
                    setattr(model, name, module.to(device=self.device, dtype=self.dtype))
        model.device, model.dtype = self.device, self.dtype
        return model


def _paired_note(vae_info: ModelInfo | None) -> str:
    """The job's note when the VAE is the one paired with the checkpoint by its file name."""
    if vae_info is None or "paired_with" not in vae_info.extra:
        return ""
    return f"{Path(vae_info.path).name} lies beside the checkpoint and is used as its VAE (as A1111 pairs them)."


def _with_bare_names(files: dict[str, Path]) -> dict[str, Path]:
    """Embeddings by discovered name, and also by bare file name (A1111: `embedding:foo` finds
    `embeddings/styles/foo.pt`) where that names one file and no discovered name already."""
    out = dict(files)
    for name in files:
        bare = bare_name(name)
        if bare != name and bare not in files:
            matched = match_asset(bare, list(files))
            if matched is not None:
                out.setdefault(bare, files[matched])
    return out
