"""A folder on the local disk as a source.

Listing stats files and reads none: a file's fingerprint is its size and mtime.
Its content hash (the document version) is computed at fetch, only for files whose
fingerprint changed, so a touched-but-identical file is recognised without re-parsing.

Confinement: nothing outside the root is ever read.
- Listing: a folder that cannot be read fails the listing (SourceError) rather than making its
  documents look deleted. A symlinked file is listed only when its target lies inside the root;
  a symlink loop, a dangling link, a pipe or a device is skipped with a reason; symlinked
  directories are never descended into (no loops, no escape) and are reported as skipped.
- Fetch: a doc_id with `..` or an absolute path is refused; the file is opened first and the path of
  what was actually opened (/proc/self/fd) is checked against the root, so a file swapped for a
  symlink between listing and fetch (or between check and read) is refused, not read. Only regular
  files are read (a pipe would block the run), and never more than `max_file_bytes`.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from ragline.errors import ConfigError, FetchError, SourceError
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
        for dirpath, dirnames, filenames in os.walk(self.root, onerror=self._unreadable_folder, followlinks=False):
            dirnames.sort()
            for dirname in [d for d in dirnames if (Path(dirpath) / d).is_symlink()]:
                dirnames.remove(dirname)  # os.walk lists links to folders as folders; it would not descend anyway
                rel = (Path(dirpath) / dirname).relative_to(self.root).as_posix()
                self._skip(_printable(rel), "symlink to a folder: folders behind symlinks are not read "
                                            "(they can lead outside the source folder or loop)")
            for filename in sorted(filenames):
                path = Path(dirpath) / filename
                rel = path.relative_to(self.root).as_posix()
                if not wanted(rel, self.include, self.exclude, self.accept):
                    continue
                ref = self._ref(path, rel)
                if ref is not None:
                    yield ref

    def _unreadable_folder(self, error: OSError) -> None:
        """os.walk's default is to pass over a folder it cannot read, and the documents in it would then
        look deleted. A folder removed while listing is gone indeed; any other error fails the listing."""
        if isinstance(error, FileNotFoundError):
            return
        folder = Path(error.filename or self.root)
        inside = folder.is_relative_to(self.root)
        where = _printable(folder.relative_to(self.root).as_posix()) if inside else str(folder)
        raise SourceError(self.name, f"cannot read folder {where!r}: {error.strerror or error}; "
                                     "the listing would be incomplete, so nothing was changed")

    def _ref(self, path: Path, rel: str) -> DocRef | None:
        try:
            rel.encode("utf-8")
        except UnicodeEncodeError:
            self._skip(_printable(rel), "file name is not valid UTF-8; rename the file (e.g. with convmv)")
            return None
        if path.is_symlink():
            # os.path.realpath, not Path.resolve: the latter raises RuntimeError on a symlink loop,
            # which would end the whole listing; a loop is caught by stat() below instead.
            target = Path(os.path.realpath(path))
            if not target.is_relative_to(self.root):
                self._skip(rel, f"symlink points outside the source folder ({target})")
                return None
        try:
            st = path.stat()
        except OSError as exc:  # broken symlink, symlink loop, vanished file, permission
            self._skip(rel, f"cannot stat: {exc.strerror or exc}")
            return None
        if not stat.S_ISREG(st.st_mode):
            self._skip(rel, "not a regular file (a pipe, socket or device); not read")
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
        log.warning("skipping %r: %s", rel, reason)  # %r: a newline in a file name cannot forge a log line
        self.skipped.append((rel, reason))

    def fetch(self, ref: DocRef) -> RawDocument:
        relative = PurePosixPath(ref.doc_id)
        if relative.is_absolute() or ".." in relative.parts:
            raise FetchError(ref.doc_id, "refused: the document id leaves the source folder ('..' or an absolute path)")
        path = self.root / ref.doc_id
        try:
            # O_NONBLOCK: opening a pipe put in the file's place would otherwise wait for a writer forever.
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise FetchError(ref.doc_id, "file disappeared after listing") from None
        except OSError as exc:  # a symlink loop (ELOOP), permission
            raise FetchError(ref.doc_id, f"cannot read: {exc.strerror or exc}") from None
        with os.fdopen(fd, "rb") as handle:
            opened = _opened_path(fd, path)
            if not opened.is_relative_to(self.root):
                raise FetchError(ref.doc_id, f"refused: resolves outside the source folder ({opened}); not read")
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise FetchError(ref.doc_id, "refused: not a regular file (a folder, pipe or device); not read")
            limit = self.max_file_bytes
            if limit is not None and st.st_size > limit:
                raise FetchError(ref.doc_id, f"file is {st.st_size} bytes, over the limit of {limit}")
            try:
                data = handle.read() if limit is None else handle.read(limit + 1)
            except OSError as exc:
                raise FetchError(ref.doc_id, f"cannot read: {exc.strerror or exc}") from None
        if limit is not None and len(data) > limit:  # grew between the check and the read
            raise FetchError(ref.doc_id, f"file is over the limit of {limit} bytes")
        return RawDocument(
            ref=ref, data=data, filename=path.name, content_hash=hashlib.sha256(data).hexdigest()
        )


def _opened_path(fd: int, path: Path) -> Path:
    """The real path of the file behind `fd`: what was opened, whatever the path pointed to before."""
    try:
        return Path(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:  # no /proc (not Linux): the path as it resolves now, a narrower window but not none
        return Path(os.path.realpath(path))


def _printable(rel: str) -> str:
    """A file name that is not valid UTF-8 (surrogate-escaped by os.walk), with its bad bytes as \\xNN."""
    return os.fsencode(rel).decode("utf-8", "backslashreplace")
