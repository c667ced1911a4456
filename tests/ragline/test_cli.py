"""The `ragline` command as users and scripts see it: exit codes, --json, --data-dir."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ragline.cli import app

pytestmark = pytest.mark.model

runner = CliRunner()


def run(*args, env=None):
    return runner.invoke(app, list(args), env=env, catch_exceptions=False)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "handbook"
    root.mkdir()
    (root / "leave.md").write_text("# Leave\n\nEmployees get 25 days of annual leave each year.")
    (root / "parking.txt").write_text("Staff parking is free in the north car park after 6 pm.")
    return root


def test_ingest_search_status_round_trip(folder, tmp_path):
    data = str(tmp_path / "data")
    first = run("ingest", str(folder), "--data-dir", data, "--json")
    assert first.exit_code == 0, first.output
    [report] = json.loads(first.stdout)["runs"]
    assert (report["source"], report["added"], report["failed"]) == ("handbook", 2, 0)

    again = run("ingest", str(folder), "--data-dir", data)
    assert again.exit_code == 0 and "Nothing changed" in again.stdout

    found = json.loads(run("search", "how much annual leave", "-k", "1", "--data-dir", data, "--json").stdout)
    [hit] = found["hits"]
    assert hit["doc_id"] == "leave.md" and hit["page_start"] == 1 and hit["score"] > 0.3

    human = run("search", "where can staff park", "--filter", "source=handbook", "--data-dir", data)
    assert "handbook:parking.txt" in human.stdout and "page 1" in human.stdout
    none = json.loads(run("search", "leave", "--filter", "source=other", "--data-dir", data, "--json").stdout)
    assert none["hits"] == []

    status = json.loads(run("status", "--data-dir", data, "--json").stdout)
    [src] = status["sources"]
    assert (src["name"], src["documents"], src["failed"], src["last_run"]["status"]) == ("handbook", 2, 0, "ok")
    assert src["chunks"] == src["points"] == status["collection"]["points"] == 2


def test_data_dir_from_environment_and_resync_of_known_sources(folder, tmp_path):
    env = {"RAGLINE_DATA_DIR": str(tmp_path / "envdata")}
    assert run("ingest", str(folder), "--json", env=env).exit_code == 0
    (folder / "parking.txt").unlink()
    dry = run("ingest", "--dry-run", env=env)  # no folder: every known source
    assert dry.exit_code == 0 and "would add 0, update 0, delete 1" in dry.stdout and "parking.txt" in dry.stdout
    assert json.loads(run("status", "--json", env=env).stdout)["collection"]["points"] == 2
    # one of two documents deleted is 50%: allowed (refusal starts above the share)
    assert json.loads(run("ingest", "--json", env=env).stdout)["runs"][0]["deleted"] == 1


def test_failures_exit_non_zero_and_name_the_file(folder, tmp_path):
    (folder / "scan.pdf").write_bytes(b"not a pdf at all")
    result = run("ingest", str(folder), "--data-dir", str(tmp_path / "d"))
    assert result.exit_code == 1
    assert "scan.pdf" in result.stdout and "1 document(s) failed" in result.stderr
    status = json.loads(run("status", "--data-dir", str(tmp_path / "d"), "--json").stdout)
    assert status["sources"][0]["failures"][0]["doc_id"] == "scan.pdf"


def test_mass_delete_refusal_exits_2(folder, tmp_path):
    data = str(tmp_path / "d")
    run("ingest", str(folder), "--data-dir", data)
    for f in folder.iterdir():
        f.unlink()
    refused = run("ingest", str(folder), "--data-dir", data, "--json")
    assert refused.exit_code == 2 and "--allow-mass-delete" in json.loads(refused.stdout)["refused"][0]
    assert run("ingest", str(folder), "--data-dir", data, "--allow-mass-delete").exit_code == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("ingest", "/no/such/folder"), "does not exist"),
        (("ingest", ".", "--chunk-tokens", "500"), "500"),
        (("search", "x", "--filter", "nokeyvalue"), "key=value"),
        (("ingest",), "nothing to ingest"),
    ],
)
def test_bad_input_is_a_clear_error(tmp_path, args, message):
    result = run(*args, "--data-dir", str(tmp_path / "d"), "--json")
    assert result.exit_code == 2
    assert message in json.loads(result.stdout)["error"]


def test_a_store_failure_mid_run_is_reported_and_exits_3(folder, tmp_path, monkeypatch):
    from stores.edge import EdgeStore

    def refuse(self, points):
        raise ConnectionError("qdrant went away")

    monkeypatch.setattr(EdgeStore, "upsert", refuse)
    result = run("ingest", str(folder), "--data-dir", str(tmp_path / "d"), "--json")
    assert result.exit_code == 3
    message = json.loads(result.stdout)["error"]
    assert "ConnectionError: qdrant went away" in message and "next run resumes" in message
    monkeypatch.undo()
    resumed = json.loads(run("ingest", str(folder), "--data-dir", str(tmp_path / "d"), "--json").stdout)
    assert resumed["runs"][0]["added"] == 2


def test_a_run_stopped_at_its_second_source_still_reports_the_first(folder, tmp_path):
    """Syncing every known source, the second one's store write fails: exit 3, and the first source's
    finished report is printed with the error, not swallowed by it."""
    from ragline import failpoints

    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "wifi.md").write_text("The guest wifi password is printed at reception.")
    data = str(tmp_path / "data")
    assert run("ingest", str(folder), "--data-dir", data, "--json").exit_code == 0
    assert run("ingest", str(notes), "--data-dir", data, "--json").exit_code == 0
    (folder / "leave.md").write_text("# Leave\n\nEmployees get 27 days of annual leave each year.")
    (notes / "wifi.md").write_text("The guest wifi password changes every Monday.")

    failpoints.arm("upsert.before:2:raise")  # the first source's batch passes, the second's fails
    try:
        stopped = run("ingest", "--data-dir", data, "--json")
        failpoints.arm("upsert.before:1:raise")  # the first source is unchanged now; the second fails again
        human = run("ingest", "--data-dir", data)
    finally:
        failpoints.arm(None)
    assert stopped.exit_code == 3, stopped.output
    answer = json.loads(stopped.stdout)
    assert "FailpointError" in answer["error"] and "next run resumes" in answer["error"]
    assert [(r["source"], r["updated"]) for r in answer["runs"]] == [("handbook", 1)]
    assert human.exit_code == 3 and "handbook" in human.stdout and "error:" in human.stderr


def test_backfill_by_window_or_in_full(folder, tmp_path):
    data = str(tmp_path / "d")
    assert run("ingest", str(folder), "--data-dir", data).exit_code == 0
    needs_scope = run("backfill", "--source", "handbook", "--data-dir", data, "--json")
    assert needs_scope.exit_code == 2 and "--full-reindex" in json.loads(needs_scope.stdout)["error"]
    bad_date = run("backfill", "--since", "last tuesday", "--data-dir", data, "--json")
    assert bad_date.exit_code == 2 and "not an ISO date" in json.loads(bad_date.stdout)["error"]

    future = json.loads(run("backfill", "--source", "handbook", "--since", "2999-01-01", "--data-dir", data, "--json").stdout)
    [report] = future["runs"]
    assert (report["listing"], report["updated"], report["deleted"], report["unchanged"]) == ("window", 0, 0, 2)

    full = json.loads(run("backfill", "--source", "handbook", "--full-reindex", "--data-dir", data, "--json").stdout)
    [report] = full["runs"]
    assert (report["updated"], report["chunks_embedded"]) == (2, 2)


def test_a_second_run_of_the_same_source_exits_with_a_clear_message(folder, tmp_path):
    from ragline.config import Settings
    from ragline.ledger import Ledger

    data = tmp_path / "d"
    assert run("ingest", str(folder), "--data-dir", str(data)).exit_code == 0
    ledger = Ledger(Settings(data_dir=data).resolved_ledger_url)
    try:
        with ledger.source_lock("handbook"):
            busy = run("ingest", "--data-dir", str(data), "--json")
    finally:
        ledger.close()
    assert busy.exit_code == 2
    assert "source 'handbook' is being synced by another run" in json.loads(busy.stdout)["source_errors"][0]


def test_reindex_switches_to_a_new_chunking(folder, tmp_path):
    data = str(tmp_path / "d")
    assert run("ingest", str(folder), "--data-dir", data).exit_code == 0
    too_big = run("reindex", "--chunk-tokens", "500", "--data-dir", data, "--json")
    assert too_big.exit_code == 2 and "500" in json.loads(too_big.stdout)["error"]
    done = run("reindex", "--chunk-tokens", "120", "--overlap-tokens", "20", "--data-dir", data, "--json")
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["new_collection"].startswith("ragline--") and report["documents"] == 2
    status = json.loads(run("status", "--data-dir", data, "--json").stdout)
    assert status["collection"]["spec"]["chunk_tokens"] == 120
    # later syncs use the chunking the collection records, and find nothing to do
    again = json.loads(run("ingest", "--data-dir", data, "--json").stdout)
    assert (again["runs"][0]["unchanged"], again["runs"][0]["chunks_embedded"]) == (2, 0)
    # a run that names another chunking is still refused rather than mixing chunks
    mixed = run("ingest", "--chunk-tokens", "200", "--data-dir", data, "--json")
    assert mixed.exit_code == 2 and "chunk_tokens: collection has 120, this run uses 200" in json.loads(mixed.stdout)["error"]
