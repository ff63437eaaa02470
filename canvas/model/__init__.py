"""The Qt-free document model: layers, document, history, commands, composition."""
