"""Where a generation runs: the local engine, or ComfyUI servers (one or a pool of them).

`base.Backend` is what every backend offers (the Engine's `run(request, on_event, cancel)` plus a
name for the job record); `local.LocalBackend` wraps `inference.engine.Engine`;
`comfyui` turns requests into ComfyUI API graphs and runs them on a server; `pool.BackendPool`
hands queued jobs to whichever backend is free.
"""
