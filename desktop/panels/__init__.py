"""The dockable panels around the canvas: layers, region inspector, generation, history, staging."""
