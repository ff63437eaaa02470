"""The editor window's image import: files (dialog or drag and drop) and the clipboard become layers.

A mixin of `MainWindow` (desktop/main_window.py); image files are read here with their limits
checked before decoding.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QPointF
from PySide6.QtGui import QGuiApplication, QImage
from PySide6.QtWidgets import QFileDialog

from canvas.io.errors import ProjectError
from canvas.model.commands import AddLayer
from canvas.model.document import MAX_DOCUMENT_SIDE
from canvas.model.layers import ImageLayer
from canvas.view.qimage import to_numpy
from desktop import dialogs

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")
IMAGE_FILTER = "Images (" + " ".join(f"*{s}" for s in IMAGE_SUFFIXES) + ")"
MAX_IMPORT_PIXELS = 1 << 28


def read_image_file(path: str | Path) -> np.ndarray:
    """An image file as HxWx4 uint8 RGBA (EXIF rotation applied); ProjectError with one sentence."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as image:
            width, height = image.size
            if width > MAX_DOCUMENT_SIDE or height > MAX_DOCUMENT_SIDE or width * height > MAX_IMPORT_PIXELS:
                raise ProjectError(path, f"is {width}x{height} px; images may be at most {MAX_DOCUMENT_SIDE} px "
                                         "per side")
            image.load()
            image = ImageOps.exif_transpose(image).convert("RGBA")
            return np.asarray(image, dtype=np.uint8).copy()
    except ProjectError:
        raise
    except FileNotFoundError:
        raise ProjectError(path, "does not exist") from None
    except UnidentifiedImageError:
        raise ProjectError(path, "is not an image Collagen can read") from None
    except Image.DecompressionBombError:
        raise ProjectError(path, "declares too many pixels to be a real picture") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ProjectError(path, f"cannot be read as an image ({exc})") from None


def _image_paths(mime) -> list[str]:
    if not mime.hasUrls():
        return []
    return [url.toLocalFile() for url in mime.urls()
            if url.isLocalFile() and url.toLocalFile().lower().endswith(IMAGE_SUFFIXES)]


class ImageImport:
    """MainWindow's import, drag-and-drop and paste (mixed into the window class)."""

    def action_import(self, role: str) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Import images", self._start_dir(), IMAGE_FILTER)
        for path in paths:
            self.import_image(path, role=role)

    def import_image(self, path: str | Path, *, role: str | None = None, at: QPointF | None = None
                     ) -> ImageLayer | None:
        """An image file as a new layer; `role` image/collage/reference, None = collage over a picture."""
        try:
            pixels = read_image_file(path)
        except ProjectError as exc:
            dialogs.show_error(self, str(exc))
            return None
        return self.add_image_layer(pixels, Path(path).stem, role=role, at=at)

    def add_image_layer(self, pixels: np.ndarray, name: str, *, role: str | None = None,
                        at: QPointF | None = None) -> ImageLayer:
        """Placed centred (or at `at`), scaled down to fit the canvas; over an existing picture it
        is a collage piece unless told otherwise (pasting pieces onto a picture is the collage workflow)."""
        doc = self.document
        if role is None:
            has_picture = any(isinstance(la, ImageLayer) and not la.reference and la.visible for la in doc.layers)
            role = "collage" if has_picture else "image"
        h, w = pixels.shape[:2]
        scale = min(1.0, doc.width / w, doc.height / h)
        cx, cy = (at.x(), at.y()) if at is not None else (doc.width / 2, doc.height / 2)
        x, y = round(cx - w * scale / 2), round(cy - h * scale / 2)
        layer = ImageLayer(name=name or "Image", pixels=pixels, x=float(x), y=float(y), scale=float(scale),
                           collage=role == "collage", reference=role == "reference")
        doc.execute(AddLayer(layer))
        doc.active_layer = layer
        what = {"collage": "collage piece", "reference": "reference image"}.get(role, "image layer")
        self.statusBar().showMessage(f"Added {layer.name} as a {what}.", 4000)
        return layer

    def dragEnterEvent(self, event) -> None:
        if _image_paths(event.mimeData()):
            event.acceptProposedAction()
        else:
            super().dragEnterEvent(event)

    def dragMoveEvent(self, event) -> None:
        if _image_paths(event.mimeData()):
            event.acceptProposedAction()
        else:
            super().dragMoveEvent(event)

    def dropEvent(self, event) -> None:
        paths = _image_paths(event.mimeData())
        if not paths:
            super().dropEvent(event)
            return
        event.acceptProposedAction()
        viewport = self.view.viewport()
        local = viewport.mapFrom(self, event.position().toPoint())
        at = self.view.map_to_document(QPointF(local)) if viewport.rect().contains(local) else None
        if len(paths) == 1 and paths[0].lower().endswith(".png"):
            self.use_parameters(paths[0], dropped=True, at=at)  # with parameters: offers them, else a layer
            return
        for path in paths:
            self.import_image(path, at=at)

    def paste(self) -> None:
        clipboard = QGuiApplication.clipboard()
        mime = clipboard.mimeData()
        image = clipboard.image()
        if not image.isNull():
            pixels = to_numpy(image.convertToFormat(QImage.Format.Format_RGBA8888))
            if max(pixels.shape[:2]) > MAX_DOCUMENT_SIDE:
                dialogs.show_error(self, f"The pasted image is larger than {MAX_DOCUMENT_SIDE} px per side.")
                return
            self.add_image_layer(pixels, "Pasted")
            return
        paths = _image_paths(mime) if mime is not None else []
        if paths:
            for path in paths:
                self.import_image(path)
            return
        self.statusBar().showMessage("The clipboard holds no image.", 4000)
