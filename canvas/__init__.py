"""Collagen document model and canvas widget."""
