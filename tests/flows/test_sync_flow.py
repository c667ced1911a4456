"""The Prefect flows wrap the same pipeline: run them against a test harness (one per session)."""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.prefect, pytest.mark.model]


def test_sync_and_backfill_flows_publish_reports(prefect_harness, tmp_path):
    from prefect.artifacts import Artifact

    from flows.sync import backfill, sync
    from ragline.components import build_store
    from ragline.config import Settings

    root = tmp_path / "wiki"
    root.mkdir()
    (root / "a.md").write_text("# Returns\n\nCustomers may return unworn boots within 60 days.")
    (root / "b.txt").write_text("The warehouse ships orders placed before 2 pm the same day.")
    data = str(tmp_path / "data")

    [report] = sync(folder=str(root), data_dir=data)
    assert (report["added"], report["failed"], report["status"]) == (2, 0, "ok")
    [again] = sync(source="wiki", data_dir=data)  # a folder indexed before is a known source
    assert (again["unchanged"], again["chunks_embedded"]) == (2, 0)
    artifact = Artifact.get("ragline-sync-wiki")
    assert artifact is not None and "unchanged" in str(artifact.data)

    [rebuilt] = backfill(source="wiki", full_reindex=True, data_dir=data)
    assert (rebuilt["updated"], rebuilt["chunks_embedded"]) == (2, 2)
    with pytest.raises(ValueError, match="window"):
        backfill(source="wiki", data_dir=data)

    store = build_store(Settings(data_dir=tmp_path / "data"))
    try:
        assert store.count({"source": "wiki"}) == 2
    finally:
        store.close()


def test_a_source_that_stops_does_not_keep_the_next_one_from_syncing(prefect_harness, tmp_path):
    """Every known source in one flow run: the first refuses a mass deletion, the second still syncs;
    each publishes its artifact, and the flow run fails with the first one's error."""
    from prefect.artifacts import Artifact

    from flows.sync import sync
    from ragline.errors import MassDeleteRefused

    data = str(tmp_path / "data")
    archive, manuals = tmp_path / "archive", tmp_path / "manuals"
    for folder, topic in ((archive, "archived memo"), (manuals, "boot manual")):
        folder.mkdir()
        for i in range(4):
            (folder / f"{i}.md").write_text(f"# {topic} {i}\n\nThis {topic} number {i} covers the winter season.")
        sync(folder=str(folder), data_dir=data)
    for i in range(3):
        (archive / f"{i}.md").unlink()  # 75% gone: refused
    (manuals / "0.md").write_text("# boot manual 0\n\nResole the boots every second winter.")

    with pytest.raises(MassDeleteRefused):
        sync(data_dir=data)
    stopped, synced = Artifact.get("ragline-sync-archive"), Artifact.get("ragline-sync-manuals")
    assert "MassDeleteRefused" in str(stopped.data)
    assert {"what": "updated", "count": 1} in json.loads(synced.data)


def test_only_outages_are_retried(prefect_harness):
    from prefect import flow, task

    from flows.sync import retryable
    from ragline.errors import MassDeleteRefused

    attempts = {"outage": 0, "verdict": 0}

    @task(retries=2, retry_delay_seconds=0, retry_condition_fn=retryable)
    def flaky(kind: str) -> str:
        attempts[kind] += 1
        if kind == "outage" and attempts[kind] < 3:
            raise ConnectionError("qdrant unreachable")
        if kind == "verdict":
            raise MassDeleteRefused("would delete everything")
        return "done"

    @flow
    def run(kind: str):
        return flaky(kind)

    assert run("outage") == "done" and attempts["outage"] == 3
    with pytest.raises(MassDeleteRefused):
        run("verdict")
    assert attempts["verdict"] == 1
