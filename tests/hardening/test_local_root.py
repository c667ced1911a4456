"""The local connector never reads outside its root.

tests/connectors/test_local.py covers the listing side (a file symlink out of the root is skipped,
directory links are not descended, non-UTF-8 names are skipped). This module attacks the rest:
ids with `..` or absolute paths handed to fetch, links whose target is outside reached through
fetch, symlink loops, pipes, and files swapped for links between listing and fetch. It ends with a
whole sync over a root full of such traps, asserting that the secret outside is in neither the
index nor the ledger.
"""

from __future__ import annotations

import os
import shutil

import pytest

from connectors.local import LocalFolderConnector
from ragline import parsers
from ragline.errors import FetchError, SourceError
from ragline.ledger import Ledger
from ragline.pipeline import sync_source
from ragline.types import DocRef
from stores.edge import EdgeStore

SECRET = "outside-secret-7f3a: the root password is swordfish"


@pytest.fixture
def layout(tmp_path):
    """root/ with ordinary files, and outside/ next to it holding the secret."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text(SECRET)
    (outside / "doc.txt").write_text(SECRET)
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "doc.txt").write_text("an ordinary document inside the root")
    (root / "sub" / "doc.txt").write_text("another ordinary document")
    return root, outside


def ref_for(connector: LocalFolderConnector, doc_id: str) -> DocRef:
    """A DocRef as a caller could forge it (e.g. from a tampered ledger), not one the listing gave."""
    return DocRef(source=connector.name, doc_id=doc_id, fingerprint="0:0", uri="file:///forged")


@pytest.mark.parametrize("doc_id", ["../outside/secret.txt", "sub/../../outside/secret.txt",
                                    "sub/../doc.txt", "/etc/passwd", "{outside}/secret.txt"])
def test_fetch_refuses_ids_that_leave_the_root(layout, doc_id):
    root, outside = layout
    connector = LocalFolderConnector(root)
    with pytest.raises(FetchError) as info:
        connector.fetch(ref_for(connector, doc_id.format(outside=outside)))
    # `sub/../doc.txt` would land inside, but an id with `..` is never one the listing makes: refused too
    assert "refused" in info.value.reason and "leaves the source folder" in info.value.reason


def test_fetch_refuses_a_file_link_out_of_the_root(layout):
    root, outside = layout
    (root / "escape.txt").symlink_to(outside / "secret.txt")
    connector = LocalFolderConnector(root)
    assert "escape.txt" not in [r.doc_id for r in connector.list()]
    with pytest.raises(FetchError) as info:
        connector.fetch(ref_for(connector, "escape.txt"))
    assert "outside the source folder" in info.value.reason and "not read" in info.value.reason


def test_fetch_refuses_a_path_through_a_folder_link_out_of_the_root(layout):
    root, outside = layout
    (root / "linked").symlink_to(outside, target_is_directory=True)
    connector = LocalFolderConnector(root)
    listed = [r.doc_id for r in connector.list()]
    assert listed == ["doc.txt", "sub/doc.txt"]
    assert ("linked", connector.skipped[0][1]) == connector.skipped[0] and "folder" in connector.skipped[0][1]
    with pytest.raises(FetchError, match="outside the source folder"):
        connector.fetch(ref_for(connector, "linked/secret.txt"))


def test_a_link_inside_the_root_is_still_read(layout):
    root, _ = layout
    (root / "alias.txt").symlink_to(root / "sub" / "doc.txt")
    connector = LocalFolderConnector(root)
    ref = next(r for r in connector.list() if r.doc_id == "alias.txt")
    assert connector.fetch(ref).data == b"another ordinary document"


def test_a_symlink_loop_is_skipped_at_listing_and_refused_at_fetch(layout):
    root, _ = layout
    (root / "a.txt").symlink_to("b.txt")
    (root / "b.txt").symlink_to("a.txt")
    (root / "self.txt").symlink_to("self.txt")
    connector = LocalFolderConnector(root)
    assert [r.doc_id for r in connector.list()] == ["doc.txt", "sub/doc.txt"]  # the listing survives the loops
    reasons = dict(connector.skipped)
    assert set(reasons) == {"a.txt", "b.txt", "self.txt"}
    assert all("symbolic links" in reason for reason in reasons.values())
    with pytest.raises(FetchError, match="symbolic links"):
        connector.fetch(ref_for(connector, "a.txt"))


def test_a_file_replaced_by_an_outside_link_between_list_and_fetch_is_refused(layout):
    root, outside = layout
    connector = LocalFolderConnector(root)
    ref = next(r for r in connector.list() if r.doc_id == "doc.txt")
    (root / "doc.txt").unlink()
    (root / "doc.txt").symlink_to(outside / "secret.txt")
    with pytest.raises(FetchError) as info:
        connector.fetch(ref)
    assert "outside the source folder" in info.value.reason and str(outside / "secret.txt") in info.value.reason


def test_a_folder_replaced_by_an_outside_link_between_list_and_fetch_is_refused(layout):
    root, outside = layout
    connector = LocalFolderConnector(root)
    ref = next(r for r in connector.list() if r.doc_id == "sub/doc.txt")
    shutil.rmtree(root / "sub")
    (root / "sub").symlink_to(outside, target_is_directory=True)  # outside/doc.txt exists: same relative path
    with pytest.raises(FetchError, match="outside the source folder"):
        connector.fetch(ref)


def test_a_file_replaced_by_a_pipe_is_refused_without_blocking(layout):
    root, _ = layout
    connector = LocalFolderConnector(root)
    ref = next(r for r in connector.list() if r.doc_id == "doc.txt")
    (root / "doc.txt").unlink()
    os.mkfifo(root / "doc.txt")  # opened for reading without O_NONBLOCK, this waits for a writer forever
    with pytest.raises(FetchError, match="not a regular file"):
        connector.fetch(ref)
    assert "doc.txt" not in [r.doc_id for r in connector.list()]
    assert ("doc.txt", "not a regular file (a pipe, socket or device); not read") in connector.skipped


def test_a_sync_over_a_trapped_root_never_indexes_what_lies_outside(layout, tmp_path, embedder, chunker):
    root, outside = layout
    (root / "escape.txt").symlink_to(outside / "secret.txt")
    (root / "linked").symlink_to(outside, target_is_directory=True)
    (root / "loop").symlink_to(root, target_is_directory=True)
    (root / "a.txt").symlink_to("b.txt")
    (root / "b.txt").symlink_to("a.txt")
    (root / "dangling.txt").symlink_to(tmp_path / "nowhere.txt")
    store, ledger = EdgeStore(path=tmp_path / "data" / "qdrant"), Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        connector = LocalFolderConnector(root, name="trapped", accept=parsers.is_supported)
        report = sync_source(connector, store=store, ledger=ledger, embedder=embedder, chunker=chunker)
        texts = [payload["text"] for _, payload in store.iter_points()]
        assert report.added == 2 and not report.failures
        assert {p["doc_id"] for _, p in store.iter_points()} == {"doc.txt", "sub/doc.txt"}
        assert not any("swordfish" in text for text in texts)
        assert {s["doc_id"] for s in report.skipped} == {"escape.txt", "linked", "loop", "a.txt", "b.txt",
                                                         "dangling.txt"}
        assert all(s["reason"] for s in report.skipped)
        assert {d.doc_id for d in ledger.documents("trapped")} == {"doc.txt", "sub/doc.txt"}
    finally:
        store.close()
        ledger.close()


def _list_as_nobody(root) -> dict:
    """The listing's outcome in a forked child that dropped root's rights (permission bits do not stop root)."""
    import json

    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no pytest machinery from here on, only the listing and os._exit
        try:
            os.close(reader)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)  # nobody
            try:
                outcome = {"ids": [r.doc_id for r in LocalFolderConnector(root).list()]}
            except SourceError as exc:
                outcome = {"error": exc.reason}
            os.write(writer, json.dumps(outcome).encode())
        finally:
            os._exit(0)
    os.close(writer)
    with os.fdopen(reader, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    return json.loads(data)


def test_an_unreadable_folder_fails_the_listing_instead_of_looking_deleted():
    """os.walk passes over a folder it cannot read; its documents would then be deleted from the index."""
    import tempfile
    from pathlib import Path

    base = Path(tempfile.mkdtemp(prefix="ragline-perm-"))  # not under tmp_path: `nobody` must traverse it
    try:
        base.chmod(0o755)
        root = base / "root"
        (root / "locked").mkdir(parents=True)
        (root / "open.txt").write_text("readable")
        (root / "locked" / "inside.txt").write_text("unreadable folder")
        root.chmod(0o755)
        (root / "locked").chmod(0o000)
        if os.geteuid() == 0:
            outcome = _list_as_nobody(root)
        else:
            try:
                outcome = {"ids": [r.doc_id for r in LocalFolderConnector(root).list()]}
            except SourceError as exc:
                outcome = {"error": exc.reason}
        assert outcome == {"error": "cannot read folder 'locked': Permission denied; the listing would be "
                                    "incomplete, so nothing was changed"}
    finally:
        (base / "root" / "locked").chmod(0o755)
        shutil.rmtree(base)
