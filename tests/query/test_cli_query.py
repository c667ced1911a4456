"""`ragline ask` in-process and `ragline serve` as a real server process, on a small ingested folder."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from ragline.cli import app

pytestmark = pytest.mark.model
REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-query")
    docs = root / "docs"
    docs.mkdir()
    (docs / "leave.md").write_text("# Annual leave\n\nEmployees get 27 days of annual leave per year. "
                                   "Unused days expire at the end of March.", encoding="utf-8")
    (docs / "parking.md").write_text("# Parking\n\nVisitors park on level -2 of the garage.", encoding="utf-8")
    result = runner.invoke(app, ["ingest", str(docs), "--data-dir", str(root / "data"), "--json"])
    assert result.exit_code == 0, result.output
    return root / "data"


def test_ask_answers_in_process_with_citations(data_dir, monkeypatch):
    for name in ("RAGLINE_LLM_BASE_URL", "RAGLINE_API_KEYS"):
        monkeypatch.delenv(name, raising=False)
    result = runner.invoke(app, ["ask", "How many days of annual leave do employees get?", "--data-dir", str(data_dir), "--json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["extractive"] is True and "27 days" in body["answer"]
    assert body["citations"][0]["doc_id"] == "leave.md"
    human = runner.invoke(app, ["ask", "Where do visitors park?", "--data-dir", str(data_dir)])
    assert human.exit_code == 0 and "level -2" in human.stdout and "parking.md" in human.stdout
    verify = runner.invoke(app, ["audit", "verify", "--data-dir", str(data_dir), "--json"])
    assert json.loads(verify.stdout)["entries"] == 2  # the CLI's answers are audited too


def test_serve_runs_the_api_and_refuses_to_start_without_keys(data_dir):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGLINE_")}
    no_keys = subprocess.run([sys.executable, "-m", "ragline.cli", "serve", "--data-dir", str(data_dir), "--port", str(port)],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert no_keys.returncode == 2 and "RAGLINE_API_KEYS" in no_keys.stderr
    server = subprocess.Popen([sys.executable, "-m", "ragline.cli", "serve", "--data-dir", str(data_dir), "--port", str(port)],
                              cwd=REPO, env={**env, "RAGLINE_API_KEYS": "cli-key"}, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.3)
        else:
            pytest.fail(f"ragline serve did not become ready: {server.stderr.read() if server.poll() is not None else ''}")
        hits = httpx.post(f"{url}/v1/search", json={"query": "annual leave", "k": 1},
                          headers={"Authorization": "Bearer cli-key"}, timeout=30).json()["results"]
        assert hits[0]["doc_id"] == "leave.md"
        assert httpx.post(f"{url}/v1/search", json={"query": "x"}, timeout=30).status_code == 401
    finally:
        server.terminate()
        server.wait(timeout=30)
