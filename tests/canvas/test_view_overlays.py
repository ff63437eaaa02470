"""Masks, regions and annotations are drawn above picture layers, each kind with its own show/hide."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF
from PySide6.QtGui import QImage, QPainter

from canvas.model.commands import AddLayer
from canvas.model.document import Document
from canvas.model.layers import ImageLayer, MaskLayer, RegionLayer
from canvas.view.canvas_view import CanvasView

SIDE = 64


def render(view: CanvasView) -> np.ndarray:
    image = QImage(SIDE, SIDE, QImage.Format.Format_RGBA8888)
    image.fill(0)
    painter = QPainter(image)
    view.canvas_scene.render(painter, QRectF(0, 0, SIDE, SIDE), QRectF(0, 0, SIDE, SIDE))
    painter.end()
    return np.array(image.constBits(), np.uint8).reshape(SIDE, SIDE, 4)[..., :3].copy()


def opaque_image(color) -> ImageLayer:
    pixels = np.zeros((SIDE, SIDE, 4), np.uint8)
    pixels[...] = (*color, 255)
    return ImageLayer(name="photo", pixels=pixels)


def test_a_region_and_a_mask_under_an_image_layer_stay_visible_until_hidden(qtbot):
    doc = Document(SIDE, SIDE)
    mask_pixels = np.zeros((SIDE, SIDE), np.uint8)
    mask_pixels[:, : SIDE // 2] = 255
    mask = MaskLayer(name="mask", pixels=mask_pixels)
    region = RegionLayer(name="region", rect=(SIDE // 2, 0, SIDE // 2, SIDE), prompt="a cat")
    doc.execute(AddLayer(mask))
    doc.execute(AddLayer(region))
    doc.execute(AddLayer(opaque_image((20, 200, 40))))  # moved above both, as the user did
    view = CanvasView(doc)
    qtbot.addWidget(view)
    plain = np.array([20, 200, 40])
    shown = render(view)
    assert np.abs(shown[SIDE // 2, 8].astype(int) - plain).max() > 20  # the mask tint is on top
    assert np.abs(shown[SIDE // 2, SIDE - 20].astype(int) - plain).max() > 20  # so is the region's
    view.set_overlay_shown("masks", False)
    shown = render(view)
    assert np.abs(shown[SIDE // 2, 8].astype(int) - plain).max() <= 2
    assert np.abs(shown[SIDE // 2, SIDE - 20].astype(int) - plain).max() > 20  # regions still shown
    view.set_overlay_shown("regions", False)
    assert np.abs(render(view)[SIDE // 2, SIDE - 20].astype(int) - plain).max() <= 2
    assert mask.visible and region.visible  # hiding an overlay kind is the view's, not the document's
    view.set_overlay_shown("masks", True)
    assert np.abs(render(view)[SIDE // 2, 8].astype(int) - plain).max() > 20
