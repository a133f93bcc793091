"""Content digests of input files, computed once and cached by file identity.

Every image a study reads carries the SHA-256 of its bytes in the samples table,
so a file replaced at the same path changes the samples table, and with it the
fingerprint of every later stage, the input cache key and each benchmark fold's
spec. Hashing every image on every run would be wasted I/O, so
:class:`DigestCache` remembers each digest with the file's size, modification
time and status-change time (``st_ctime_ns``, which no user tool can set back,
unlike the modification time that ``cp -p`` or ``rsync -a`` preserve): a file
whose identity is unchanged is not read again.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ethnicmer.io import write_json_atomic


def sha256_file(path: Path | str) -> str:
    """SHA-256 (hex) of a file's bytes.

    Raises:
        OSError: the file cannot be read.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _identity(stat: os.stat_result) -> list[int]:
    return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]


class DigestCache:
    """SHA-256 of files, cached by (absolute path, size, mtime, ctime, inode).

    Args:
        store: JSON file that keeps the cache between runs (``None``: memory only).
            A missing or unreadable store starts empty.

    Example::

        cache = DigestCache(run_dir / "cache" / "digests.json")
        digest = cache.digest("flow.png")
        cache.save()
    """

    def __init__(self, store: Path | None = None) -> None:
        self.store = Path(store) if store is not None else None
        self._entries: dict[str, list] = {}
        self._dirty = False
        if self.store is not None and self.store.is_file():
            try:
                loaded = json.loads(self.store.read_text())
                if isinstance(loaded, dict):
                    self._entries = loaded
            except (OSError, ValueError):
                self._entries = {}

    def digest(self, path: Path | str) -> str:
        """The SHA-256 of ``path``'s bytes (read only when its identity changed).

        Raises:
            OSError: the file does not exist or cannot be read.
        """
        key = os.path.abspath(path)
        identity = _identity(os.stat(key))
        entry = self._entries.get(key)
        if entry is not None and entry[:-1] == identity:
            return str(entry[-1])
        value = sha256_file(key)
        self._entries[key] = [*identity, value]
        self._dirty = True
        return value

    def save(self) -> None:
        """Write the store (atomically) if anything was added."""
        if self.store is not None and self._dirty:
            write_json_atomic(self.store, self._entries)
            self._dirty = False


def digest_strings(values: list[str]) -> str:
    """SHA-256 (hex) of a list of strings joined by newlines (order matters)."""
    return hashlib.sha256("\n".join(values).encode()).hexdigest()
