"""ComfyUI servers as Collagen backends (issue 20): graph building, the HTTP/websocket client, the backend.

Collagen talks to an unmodified ComfyUI server through its public API only (`/object_info`,
`/upload/image`, `/prompt`, `/history`, `/view`, `/interrupt`, `/queue`, `/ws`); no ComfyUI code is
part of Collagen. Pixel-space work (inpaint crop, mask blur, paste-back, colour match, the refine
strength map) stays in Collagen, so what lies outside the mask is exactly what the local engine keeps.
"""
