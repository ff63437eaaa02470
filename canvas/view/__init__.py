"""The canvas widget (Qt): view, layer items, tools, staging and heat overlays."""
