"""The editor window's PNG export: the flattened canvas with the A1111 parameters and a Collagen record.

A mixin of `MainWindow` (desktop/main_window.py).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFileDialog

from canvas.io.errors import ProjectError
from canvas.io.png_info import write_png
from canvas.model.compose import compose
from canvas.model.document import DocumentError
from canvas.model.layers import ImageLayer
from desktop import dialogs
from desktop.generation import AcceptCandidate


class PngExport:
    """MainWindow's export (mixed into the window class)."""

    # ==== export ===================================================================================
    def action_export_png(self) -> None:
        start = (self.path.with_suffix(".png") if self.path else Path(self._start_dir()) / "Untitled.png")
        path, _ = QFileDialog.getSaveFileName(self, "Export PNG", str(start), "PNG images (*.png)")
        if path:
            path = Path(path)
            self.export_png(path if path.suffix.lower() == ".png" else path.with_suffix(".png"))

    def action_export_psd(self) -> None:
        from canvas.io.psd import save_psd  # psd-tools is imported only when exporting

        start = (self.path.with_suffix(".psd") if self.path else Path(self._start_dir()) / "Untitled.psd")
        path, _ = QFileDialog.getSaveFileName(self, "Export PSD", str(start), "Photoshop files (*.psd)")
        if not path:
            return
        path = Path(path) if Path(path).suffix.lower() == ".psd" else Path(path).with_suffix(".psd")
        try:
            notes = save_psd(self.document, path)
        except ProjectError as exc:
            dialogs.show_error(self, str(exc))
            return
        self.statusBar().showMessage(" ".join([f"Exported {path.name}.", *notes]), 0 if notes else 4000)

    def export_png(self, path: Path) -> bool:
        try:
            composition = compose(self.document)
            parameters, record = self.export_metadata(composition)
            write_png(path, composition.init_image, parameters, record)
        except ProjectError as exc:
            dialogs.show_error(self, str(exc))
            return False
        except (DocumentError, OSError) as exc:
            dialogs.show_error(self, f"{Path(path).name}: could not be exported ({exc}).")
            return False
        self.statusBar().showMessage(f"Exported {Path(path).name}.", 4000)
        return True

    def export_metadata(self, composition) -> tuple[dict, dict]:
        """The A1111 parameters of the picture (`picture_parameters`), and a Collagen record with
        mode, regions and layer summary."""
        parameters = picture_parameters(self.document)
        s = self.document.settings
        if parameters is None:
            parameters = {"prompt": s.prompt, "negative_prompt": s.negative, "steps": s.steps, "sampler": s.sampler,
                          "cfg_scale": s.cfg, "model": s.model, "mode": s.mode}
            if s.seed >= 0:
                parameters["seed"] = s.seed
        record = {
            "mode": s.mode,
            "settings": s.to_dict(),
            "regions": [{"name": r.name, "prompt": r.prompt, "negative": r.negative, "strength": r.strength,
                         "loras": [list(lo) for lo in r.loras], "mask": r.mask} for r in composition.regions],
            "inpaint_mask": composition.inpaint_mask,
            "layers": [{"name": la.name, "kind": la.kind, "visible": la.visible} for la in self.document.layers],
        }
        return parameters, record


def picture_parameters(document) -> dict | None:
    """The record of the generation the picture shows, None when no generation made any of it:
    the selected layer's when it is a generated layer, else the topmost shown generated layer's
    (records live on the layers, so this holds after saving and reopening), else the accepted
    result still in the undo history (a layer from before records were kept on layers)."""
    active = document.active_layer
    if isinstance(active, ImageLayer) and active.generation is not None and document.shown(active):
        return dict(active.generation)
    shown = document.shown_layers()
    for layer in reversed(shown):
        if isinstance(layer, ImageLayer) and layer.generation is not None and not layer.reference:
            return dict(layer.generation)
    visible = {id(la) for la in shown}
    for command in document.history.done_commands():
        if isinstance(command, AcceptCandidate) and id(command.layer) in visible:
            return {k: v for k, v in command.parameters.items() if k != "job_settings"}
    return None
