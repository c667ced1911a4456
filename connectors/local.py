"""A folder on the local disk as a source.

Listing stats files and reads none: a file's fingerprint is its size and mtime.
Its content hash (the document version) is computed at fetch, only for files whose
fingerprint changed, so a touched-but-identical file is recognised without re-parsing.

Symlinks: a symlinked file is listed only when its target lies inside the root;
symlinked directories are never descended into (no loops, no escape).
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from ragline.errors import ConfigError, FetchError
from ragline.types import DocRef, RawDocument

log = logging.getLogger(__name__)


def glob_match(rel_path: str, pattern: str) -> bool:
    """fnmatch where a leading `**/` also matches at the root (`**/*.pdf` matches `a.pdf`)."""
    if fnmatch.fnmatchcase(rel_path, pattern):
        return True
    return pattern.startswith("**/") and fnmatch.fnmatchcase(rel_path, pattern[3:])


def wanted(rel_path: str, include: Sequence[str], exclude: Sequence[str], accept: Callable[[str], bool]) -> bool:
    """Whether a path (relative to a source's root) is listed: accepted, included, not excluded."""
    return (
        accept(rel_path)
        and any(glob_match(rel_path, p) for p in include)
        and not any(glob_match(rel_path, p) for p in exclude)
    )


class LocalFolderConnector:
    kind = "local"

    def __init__(
        self,
        root: str | Path,
        *,
        name: str | None = None,
        include: Sequence[str] = ("**/*",),
        exclude: Sequence[str] = (),
        accept: Callable[[str], bool] = lambda _name: True,
        max_file_bytes: int | None = None,
    ):
        root_path = Path(root).expanduser()
        if not root_path.is_dir():
            raise ConfigError(f"source folder {root} does not exist or is not a directory")
        self.root = root_path.resolve()
        self.name = name or self.root.name
        self.include = tuple(include)
        self.exclude = tuple(exclude)
        self.accept = accept
        self.max_file_bytes = max_file_bytes
        self.skipped: list[tuple[str, str]] = []  # (path, reason) of files listing passed over

    @property
    def location(self) -> str:
        return str(self.root)

    def list(self) -> Iterator[DocRef]:
        self.skipped.clear()
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=False):
            dirnames.sort()
            for filename in sorted(filenames):
                path = Path(dirpath) / filename
                rel = path.relative_to(self.root).as_posix()
                if not wanted(rel, self.include, self.exclude, self.accept):
                    continue
                ref = self._ref(path, rel)
                if ref is not None:
                    yield ref

    def _ref(self, path: Path, rel: str) -> DocRef | None:
        try:
            rel.encode("utf-8")
        except UnicodeEncodeError:
            self._skip(rel.encode("utf-8", "backslashreplace").decode(), "file name is not valid UTF-8")
            return None
        if path.is_symlink():
            target = path.resolve()
            if not target.is_relative_to(self.root):
                self._skip(rel, f"symlink points outside the source folder ({target})")
                return None
        try:
            st = path.stat()
        except OSError as exc:  # broken symlink, vanished file, permission
            self._skip(rel, f"cannot stat: {exc.strerror or exc}")
            return None
        if not path.is_file():
            return None
        return DocRef(
            source=self.name,
            doc_id=rel,
            fingerprint=f"{st.st_size}:{st.st_mtime_ns}",
            uri=path.as_uri(),
            size=st.st_size,
            modified_at=datetime.fromtimestamp(st.st_mtime, UTC),
        )

    def _skip(self, rel: str, reason: str) -> None:
        log.warning("skipping %s: %s", rel, reason)
        self.skipped.append((rel, reason))

    def fetch(self, ref: DocRef) -> RawDocument:
        path = self.root / ref.doc_id
        try:
            resolved = path.resolve(strict=True)
            if not resolved.is_relative_to(self.root):
                raise FetchError(ref.doc_id, "resolves outside the source folder")
            size = resolved.stat().st_size
            if self.max_file_bytes is not None and size > self.max_file_bytes:
                raise FetchError(ref.doc_id, f"file is {size} bytes, over the limit of {self.max_file_bytes}")
            data = resolved.read_bytes()
        except FileNotFoundError:
            raise FetchError(ref.doc_id, "file disappeared after listing") from None
        except OSError as exc:
            raise FetchError(ref.doc_id, f"cannot read: {exc.strerror or exc}") from None
        return RawDocument(
            ref=ref, data=data, filename=path.name, content_hash=hashlib.sha256(data).hexdigest()
        )
