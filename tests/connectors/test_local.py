from __future__ import annotations

import hashlib
import os

import pytest

from connectors.local import LocalFolderConnector, glob_match
from ragline.errors import ConfigError, FetchError


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "root"
    (root / "a" / "b").mkdir(parents=True)
    (root / "top.md").write_text("top")
    (root / "a" / "mid.pdf").write_bytes(b"%PDF")
    (root / "a" / "b" / "deep.txt").write_text("deep")
    (root / "a" / "b" / "skip.log").write_text("log")
    return root


def ids(connector):
    return [ref.doc_id for ref in connector.list()]


def test_lists_recursively_in_stable_order_with_cheap_fingerprints(tree):
    refs = list(LocalFolderConnector(tree).list())
    assert [r.doc_id for r in refs] == ["top.md", "a/mid.pdf", "a/b/deep.txt", "a/b/skip.log"]
    top = refs[0]
    st = (tree / "top.md").stat()
    assert top.fingerprint == f"{st.st_size}:{st.st_mtime_ns}"
    assert top.source == "root" and top.uri == (tree / "top.md").resolve().as_uri()


def test_include_and_exclude_globs(tree):
    assert ids(LocalFolderConnector(tree, include=["**/*.pdf", "**/*.md"])) == ["top.md", "a/mid.pdf"]
    assert ids(LocalFolderConnector(tree, exclude=["a/b/*"])) == ["top.md", "a/mid.pdf"]
    assert ids(LocalFolderConnector(tree, accept=lambda n: not n.endswith(".log"))) == ["top.md", "a/mid.pdf", "a/b/deep.txt"]
    assert glob_match("x.pdf", "**/*.pdf") and glob_match("a/x.pdf", "**/*.pdf") and not glob_match("x.pdfx", "**/*.pdf")


def test_never_follows_a_symlink_out_of_the_root(tree, tmp_path):
    secret = tmp_path / "outside.txt"
    secret.write_text("secret")
    (tree / "escape.txt").symlink_to(secret)
    (tree / "inside.txt").symlink_to(tree / "top.md")
    (tree / "loop").symlink_to(tree, target_is_directory=True)  # a directory link is never descended
    outside_dir = tmp_path / "elsewhere"
    outside_dir.mkdir()
    (outside_dir / "x.txt").write_text("x")
    (tree / "linked_dir").symlink_to(outside_dir, target_is_directory=True)
    connector = LocalFolderConnector(tree)
    listed = ids(connector)
    assert "escape.txt" not in listed and "inside.txt" in listed
    assert not any(i.startswith(("loop/", "linked_dir/")) for i in listed)
    folder_link = ("symlink to a folder: folders behind symlinks are not read "
                   "(they can lead outside the source folder or loop)")
    assert sorted(connector.skipped) == [
        ("escape.txt", f"symlink points outside the source folder ({secret})"),
        ("linked_dir", folder_link),
        ("loop", folder_link),
    ]


def test_fetch_hashes_content_and_reports_vanished_files(tree):
    connector = LocalFolderConnector(tree, max_file_bytes=10)
    ref = next(r for r in connector.list() if r.doc_id == "top.md")
    raw = connector.fetch(ref)
    assert raw.data == b"top" and raw.content_hash == hashlib.sha256(b"top").hexdigest()
    (tree / "top.md").unlink()
    with pytest.raises(FetchError, match="disappeared"):
        connector.fetch(ref)
    (tree / "big.txt").write_text("x" * 11)
    big = next(r for r in connector.list() if r.doc_id == "big.txt")
    with pytest.raises(FetchError, match="over the limit"):
        connector.fetch(big)


def test_a_missing_root_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        LocalFolderConnector(tmp_path / "nope")


def test_non_utf8_file_names_are_skipped_with_a_reason(tree):
    os.close(os.open(os.path.join(os.fsencode(tree), b"bad\xffname.txt"), os.O_CREAT | os.O_WRONLY))
    connector = LocalFolderConnector(tree)
    assert len(ids(connector)) == 4
    reason = "file name is not valid UTF-8; rename the file (e.g. with convmv)"
    assert connector.skipped == [("bad\\xffname.txt", reason)]
