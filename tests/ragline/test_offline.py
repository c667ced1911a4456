"""Ingesting every supported format, model load included, opens no network connection.

Runs `ragline ingest` in a fresh interpreter whose socket layer refuses every non-local
connection and name lookup before anything is imported, so a library that tries to
download a model, send telemetry or check for updates makes the run fail.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from ragline.parsers import SUPPORTED_SUFFIXES

pytestmark = pytest.mark.model

REPO = Path(__file__).resolve().parents[2]
SAMPLE_CORPUS = REPO / "samples" / "corpus"

GUARDED_INGEST = r"""
import socket, sys
attempts = []
def _refuse(what):
    def guard(*args, **kwargs):
        attempts.append((what, repr(args)[:200]))
        raise OSError(f"network disabled in this test: {what} {args!r}")
    return guard
real_connect = socket.socket.connect
def connect(self, address):
    if self.family == socket.AF_UNIX:
        return real_connect(self, address)
    return _refuse("connect")(address)
socket.socket.connect = connect
socket.socket.connect_ex = lambda self, address: _refuse("connect_ex")(address)
socket.getaddrinfo = _refuse("getaddrinfo")
socket.create_connection = _refuse("create_connection")

from ragline.cli import app
try:
    app(sys.argv[1:], standalone_mode=False)
finally:
    print("NETWORK_ATTEMPTS=" + repr(attempts), file=sys.stderr)
"""


def test_ingesting_every_format_opens_no_connection(tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(SAMPLE_CORPUS, corpus)
    pd.DataFrame({"store": ["Boulder", "Moab"], "manager": ["Ines Ortega", "Sam Whitlock"]}).to_excel(
        corpus / "managers.xlsx", index=False
    )
    (corpus / "notes.markdown").write_text("# Notes\n\nKeep receipts for seven years.")
    (corpus / "readme.text").write_text("Plain text with the .text suffix.")
    (corpus / "page.htm").write_text("<html><body><p>An .htm page about tents.</p></body></html>")
    covered = {p.suffix.lower() for p in corpus.rglob("*") if p.is_file()}
    assert covered >= SUPPORTED_SUFFIXES, f"formats missing from the test corpus: {SUPPORTED_SUFFIXES - covered}"

    proc = subprocess.run(
        [sys.executable, "-c", GUARDED_INGEST, "ingest", str(corpus), "--data-dir", str(tmp_path / "data"), "--json"],
        capture_output=True, text=True, cwd=REPO, timeout=600,
    )
    assert "NETWORK_ATTEMPTS=[]" in proc.stderr, proc.stderr[-3000:]
    [report] = json.loads(proc.stdout)["runs"]
    assert report["failed"] == 0, report["failures"]
    assert report["added"] == len([p for p in corpus.rglob("*") if p.is_file()])
    assert report["chunks_embedded"] > report["added"]
