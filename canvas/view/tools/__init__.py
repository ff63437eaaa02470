"""Canvas tools: each turns mouse events (in document coordinates) into document commands."""

from __future__ import annotations

from typing import TYPE_CHECKING

from canvas.model.paint import clear_mask, fill_mask, invert_mask
from canvas.view.tools.base import Tool, ToolEvent
from canvas.view.tools.brush import BrushTool, EraserTool
from canvas.view.tools.eyedropper import EyedropperTool
from canvas.view.tools.region_box import RegionBoxTool
from canvas.view.tools.scribble import ScribbleTool
from canvas.view.tools.transform import MoveTool

if TYPE_CHECKING:
    from canvas.view.canvas_view import CanvasView

__all__ = [
    "BrushTool", "EraserTool", "EyedropperTool", "MoveTool", "RegionBoxTool", "ScribbleTool", "Tool",
    "ToolEvent", "clear_mask", "fill_mask", "invert_mask", "make_tools",
]


def make_tools(view: CanvasView) -> dict[str, Tool]:
    """One of each tool for a view, by name: brush, eraser, region, move, scribble, eyedropper."""
    tools = (BrushTool(view), EraserTool(view), RegionBoxTool(view), MoveTool(view), ScribbleTool(view),
             EyedropperTool(view))
    return {tool.name: tool for tool in tools}
