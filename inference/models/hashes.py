"""Model hashes for the PNG parameters, cached on disk so a checkpoint is read once, not every launch."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


class ModelHashes:
    """A1111 'AutoV2' short hashes (first 10 hex of the file's sha256), cached by (path, size, mtime)."""

    def __init__(self, cache_file: Path | None = None):
        self.cache_file = cache_file
        self._cache: dict[str, str] = self._read_cache()

    def short_hash(self, path: str | os.PathLike) -> str:
        path = Path(path)
        stat = path.stat()
        key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
        if key not in self._cache:
            digest = hashlib.sha256()
            with open(path, "rb") as handle:
                for chunk in iter(lambda: handle.read(16 * 1024 * 1024), b""):
                    digest.update(chunk)
            self._cache[key] = digest.hexdigest()[:10]
            self._write_cache()
        return self._cache[key]

    def _read_cache(self) -> dict[str, str]:
        if self.cache_file is None or not self.cache_file.is_file():
            return {}
        try:
            cached = json.loads(self.cache_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return {}  # a cache is only a shortcut: a broken one is rebuilt
        return {str(k): str(v) for k, v in cached.items()} if isinstance(cached, dict) else {}

    def _write_cache(self) -> None:
        if self.cache_file is None:
            return
        try:
            self.cache_file.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.cache_file.with_suffix(".tmp")
            temporary.write_text(json.dumps(self._cache, indent=0), encoding="utf-8")
            os.replace(temporary, self.cache_file)
        except OSError:
            pass  # hashing still worked; the next run hashes again
