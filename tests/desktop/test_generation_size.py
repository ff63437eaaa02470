"""Issue 16: the generation size. only_masked crops are generated at the model's resolution, not at
the canvas size; canvases over the generation limit (or far above the family's native area) are
generated at about the native area and scaled back; inpaint keeps the unmasked bytes; the panel's
Generation size control changes the request."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image

from canvas.io.ora import load_ora, save_ora
from canvas.model.commands import AddLayer, SetSetting
from canvas.model.compose import compose
from canvas.model.document import Document
from canvas.model.layers import ImageLayer, MaskLayer
from desktop.cli import main
from desktop.request_builder import build_plan, build_request
from inference.api import MAX_SIDE, Finished, RequestError
from inference.engine import Engine
from inference.families import FAMILIES
from inference.models import ModelManager
from inference.resolution import AUTO_AREA_FACTOR, GRID, choose_generation_size
from inference.sd.masks import dilate

SD15_AREA = FAMILIES.get("sd15").native_area
SDXL_AREA = FAMILIES.get("sdxl").native_area


def picture(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A smooth random picture (the engine's resampling has something to get wrong)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(max(height // 16, 2), max(width // 16, 2), 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC))


def document(width: int, height: int, *, mask_box=None, **settings) -> tuple[Document, np.ndarray]:
    doc = Document(width, height)
    image = picture(width, height)
    rgba = np.dstack([image, np.full((height, width), 255, np.uint8)])
    doc.execute(AddLayer(ImageLayer(name="picture", pixels=rgba)))
    if mask_box is not None:
        x0, y0, x1, y1 = mask_box
        mask = np.zeros((height, width), np.uint8)
        mask[y0:y1, x0:x1] = 255
        doc.execute(AddLayer(MaskLayer(name="mask", pixels=mask)))
    for name, value in {"prompt": "a fox", "steps": 1, "seed": 7, "sampler": "Euler", "cfg": 1.0,
                        "model": "builtin:tiny-sd15", **settings}.items():
        doc.execute(SetSetting(name, value))
    return doc, image


def run_plan(plan) -> Finished:
    events = []
    Engine(ModelManager([])).run(plan.request, lambda event: events.append(plan.to_canvas(event)), threading.Event())
    finished = [event for event in events if isinstance(event, Finished)]
    assert finished, events
    return finished[0]


def outside(mask_box, width: int, height: int, margin: int) -> np.ndarray:
    """The pixels farther than `margin` px from the mask's box."""
    x0, y0, x1, y1 = mask_box
    mask = np.zeros((height, width), bool)
    mask[y0:y1, x0:x1] = True
    return ~dilate(mask, margin)


# ---- the size rule ------------------------------------------------------------------------------


def test_auto_keeps_a_picture_near_the_native_area_and_scales_the_rest_to_it():
    assert not choose_generation_size(512, 512, native_area=SD15_AREA).scaled
    own = choose_generation_size(768, 512, native_area=SD15_AREA)
    assert (own.width, own.height) == (768, 512) and not own.scaled
    far = choose_generation_size(2048, 1024, native_area=SD15_AREA)  # 8x the native area
    assert far.scaled and far.reason == "the model's native size"
    assert far.width % GRID == 0 and far.height % GRID == 0
    assert abs(far.width * far.height / SD15_AREA - 1) < 0.15 and far.width / far.height == pytest.approx(2, 0.1)
    # the same canvas is near SDXL's native area: its own size
    assert not choose_generation_size(2048, 1024, native_area=SDXL_AREA).scaled
    long = choose_generation_size(10000, 512, native_area=SD15_AREA)  # over the 4096 px limit
    assert long.reason == "the generation limit" and long.width <= MAX_SIDE
    assert abs(long.width * long.height / SD15_AREA - 1) < 0.15
    assert long.width / long.height == pytest.approx(10000 / 512, rel=0.3)
    edge = int((AUTO_AREA_FACTOR * SD15_AREA) ** 0.5) // 8 * 8
    assert not choose_generation_size(edge, edge, native_area=SD15_AREA).scaled


def test_picture_size_over_the_limit_is_refused_and_custom_is_checked():
    with pytest.raises(RequestError, match="set the generation size to Auto"):
        choose_generation_size(5000, 256, native_area=SD15_AREA, choice="picture")
    with pytest.raises(RequestError, match="500x512 is not a multiple of 8"):
        choose_generation_size(512, 512, native_area=SD15_AREA, choice="custom", custom=(500, 512))
    crop = choose_generation_size(300, 200, native_area=SD15_AREA, choice="custom", custom=(768, 512), crop=True)
    assert (crop.width, crop.height) == (768, 512)  # a crop grows to the size's aspect (A1111)
    whole = choose_generation_size(2000, 1000, native_area=SD15_AREA, choice="custom", custom=(768, 768))
    assert whole.width / whole.height == pytest.approx(2, 0.05)  # a canvas keeps its aspect ratio


# ---- (a) only_masked through the request builder ------------------------------------------------


def test_only_masked_generates_the_crop_not_the_canvas():
    """The issue's case: a 128 px mask on a 2048² canvas was generated at 2048²."""
    doc, _ = document(2048, 2048, mask_box=(960, 960, 1088, 1088), mode="inpaint", inpaint_area="only_masked",
                      padding=32, mask_blur=4)
    request = build_request(compose(doc), doc.settings)
    assert request.width < 300 and request.height < 300  # the crop's own size, on the 8 px grid
    assert request.width % 8 == 0 and request.init_image.shape[:2] == (2048, 2048)


def test_only_masked_quarter_mask_costs_a_fraction_of_whole():
    """The bench's case 4 through the builder: 25 % mask on a 512² canvas (the API's own-size crop)."""
    doc, _ = document(512, 512, mask_box=(128, 128, 384, 384), mode="inpaint", inpaint_area="only_masked",
                      padding=8, mask_blur=4)
    request = build_request(compose(doc), doc.settings)
    assert request.width * request.height <= 0.45 * 512 * 512


@pytest.mark.parametrize("family, area", [("sd15", SD15_AREA), ("sdxl", SDXL_AREA)])
def test_a_large_crop_is_generated_at_the_families_native_area(family, area):
    doc, _ = document(3072, 3072, mask_box=(400, 300, 2600, 2900), mode="inpaint", inpaint_area="only_masked",
                      model=f"builtin:tiny-{family}")
    request = build_plan(compose(doc), doc.settings).request
    assert abs(request.width * request.height / area - 1) < 0.15
    crop_aspect = (2200 + 2 * 47) / (2600 + 2 * 47)
    assert request.width / request.height == pytest.approx(crop_aspect, rel=0.12)
    assert request.width % GRID == 0 and request.height % GRID == 0
    # a family named by discovery wins over the built-in name's
    other = build_plan(compose(doc), doc.settings, family="sdxl" if family == "sd15" else "sd15").request
    assert other.width * other.height != request.width * request.height


def test_a_scaled_only_masked_crop_is_pasted_back_byte_identical_outside_the_blurred_mask():
    width = height = 1536
    box = (200, 240, 1300, 1340)
    doc, image = document(width, height, mask_box=box, mode="inpaint", inpaint_area="only_masked", padding=16,
                          mask_blur=4, strength=1.0)
    plan = build_plan(compose(doc), doc.settings)
    assert plan.request.width * plan.request.height <= 1.15 * SD15_AREA and "scaled back" in plan.notice
    finished = run_plan(plan)
    out = finished.images[0]
    assert out.shape == (height, width, 3)
    scale = 1200 / plan.request.width  # canvas px per generation px (about)
    far = outside(box, width, height, int(3 * 4 + (8 + 3) * scale) + 4)
    assert np.array_equal(out[far], image[far])
    x0, y0, x1, y1 = box
    assert not np.array_equal(out[y0:y1, x0:x1], image[y0:y1, x0:x1])


# ---- (b) canvases over the limit ---------------------------------------------------------------


def test_a_canvas_over_the_limit_generates_and_comes_back_canvas_sized():
    doc, _ = document(5000, 256, strength=0.6)
    plan = build_plan(compose(doc), doc.settings)
    assert plan.rescale and plan.request.width <= MAX_SIDE and plan.request.init_image.shape[:2] == (
        plan.request.height, plan.request.width)
    assert plan.notice.startswith(f"Generated at {plan.request.width}x{plan.request.height}")
    finished = run_plan(plan)
    assert finished.images[0].shape == (256, 5000, 3) and finished.rect == (0, 0, 5000, 256)


def test_inpaint_on_a_canvas_over_the_limit_keeps_the_unmasked_bytes():
    width, height, box = 5000, 256, (1200, 60, 3400, 200)
    doc, image = document(width, height, mask_box=box, mode="inpaint", strength=1.0, mask_blur=4)
    plan = build_plan(compose(doc), doc.settings)
    assert not plan.rescale and plan.request.width <= MAX_SIDE  # the engine scales and pastes back
    finished = run_plan(plan)
    out = finished.images[0]
    assert out.shape == (height, width, 3)
    scale = width / plan.request.width
    far = outside(box, width, height, int(3 * 4 * 1 + (8 + 3) * scale) + 4)
    assert np.array_equal(out[far], image[far])
    x0, y0, x1, y1 = box
    assert not np.array_equal(out[y0:y1, x0:x1], image[y0:y1, x0:x1])


def test_cli_renders_a_canvas_over_the_limit(tmp_path, capsys, tmp_models):
    width, height, box = 5000, 256, (600, 40, 2600, 220)
    doc, image = document(width, height, mask_box=box, mode="inpaint", strength=1.0)
    project, out_png = tmp_path / "long.ora", tmp_path / "long.png"
    save_ora(doc, project)
    code = main(["render", str(project), "--model", "builtin:tiny-sd15", "--steps", "1", "--out", str(out_png)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "note: Generated at 2240x128 (the generation limit) and scaled back to the 5000x256 canvas." in err
    result = np.asarray(Image.open(out_png).convert("RGB"))
    assert result.shape == (height, width, 3)
    source = compose(load_ora(project)).init_image
    far = outside(box, width, height, int(12 + 11 * width / 2240) + 4)
    assert np.array_equal(result[far], source[far])


# ---- the panel control ---------------------------------------------------------------------------


def choose(combo, value) -> None:
    """Pick an entry the way a click in the combo's list does (activated, with the index)."""
    index = combo.findData(value)
    combo.setCurrentIndex(index)
    combo.activated.emit(index)


def test_the_generation_size_control_changes_the_request(qtbot):
    from desktop.panels.generation import GenerationPanel

    doc, _ = document(1024, 1024)
    panel = GenerationPanel(doc)
    qtbot.addWidget(panel)
    panel.show()
    assert panel.generation_size.currentData() == "auto" and panel.generation_size.currentText() == "Auto (native)"
    assert not panel.generation_width.isVisible()
    auto = build_request(compose(doc), doc.settings)
    assert abs(auto.width * auto.height / SD15_AREA - 1) < 0.15  # 4x the native area: scaled

    choose(panel.generation_size, "picture")
    assert doc.settings.generation_size == "picture"
    assert (build_request(compose(doc), doc.settings).width, build_request(compose(doc), doc.settings).height) == (
        1024, 1024)

    choose(panel.generation_size, "custom")
    assert panel.generation_width.isVisible() and panel.generation_height.isVisible()
    panel.generation_width.setValue(768)
    panel.generation_height.setValue(768)
    request = build_request(compose(doc), doc.settings)
    assert (request.width, request.height) == (768, 768)
    doc.undo()  # the height edit
    assert panel.generation_height.value() == 512


def test_the_size_row_says_what_the_canvas_is_generated_at(qtbot):
    from desktop.panels.generation import GenerationPanel

    doc, _ = document(1024, 1024)
    panel = GenerationPanel(doc)
    qtbot.addWidget(panel)
    request = build_request(compose(doc), doc.settings)
    assert (request.width, request.height) != (1024, 1024)
    assert panel.size_label.text() == (f"1024 × 1024 px (the canvas), generated at {request.width} × "
                                       f"{request.height} and scaled back")
    choose(panel.generation_size, "picture")
    assert panel.size_label.text() == "1024 × 1024 px (the canvas)"
    choose(panel.generation_size, "custom")
    panel.generation_width.setValue(768)
    request = build_request(compose(doc), doc.settings)
    assert panel.size_label.text().endswith(f"generated at {request.width} × {request.height} and scaled back")
    doc.execute(SetSetting("mode", "inpaint"))
    doc.execute(SetSetting("inpaint_area", "only_masked"))
    assert "the crop around the mask at its own size or 768 × 512" in panel.size_label.text()


def test_the_editor_stages_a_canvas_sized_result_of_a_scaled_generation(qtbot, qloop):
    """Through the generation controller and its inference thread: the staged candidate covers the
    whole 5000x256 canvas, and the notice says what size it was generated at."""
    from desktop.generation import GenerationController, JobState
    from desktop.worker import InferenceWorker

    doc, _ = document(5000, 256, strength=0.5)
    worker = InferenceWorker(lambda: Engine(ModelManager([], device="cpu")))
    controller = GenerationController(worker, doc)
    notices = []
    controller.notice.connect(notices.append)
    try:
        job = controller.generate(family="sd15")
        assert job is not None and job.request.width <= MAX_SIDE
        qtbot.waitUntil(lambda: job.state.done, timeout=120_000)
        assert job.state is JobState.FINISHED, job.message
        assert job.images[0].shape == (256, 5000, 3)
        assert (job.area.x, job.area.y, job.area.w, job.area.h) == (0, 0, 5000, 256)
        assert notices and notices[0].startswith(f"Generated at {job.request.width}x{job.request.height}")
        layer = controller.accept()
        assert layer.pixels.shape == (256, 5000, 4)
    finally:
        controller.shutdown()
        assert worker.shutdown(timeout=10)
