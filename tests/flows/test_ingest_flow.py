"""The Prefect flow wraps the same pipeline: run it against a test harness (one per session)."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.prefect, pytest.mark.model]


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def test_flow_ingests_and_publishes_a_report_artifact(prefect_harness, tmp_path):
    from prefect.artifacts import Artifact

    from flows.ingest import ingest_folder
    from stores.qdrant import QdrantStore

    root = tmp_path / "wiki"
    root.mkdir()
    (root / "a.md").write_text("# Returns\n\nCustomers may return unworn boots within 60 days.")
    (root / "b.txt").write_text("The warehouse ships orders placed before 2 pm the same day.")
    data = str(tmp_path / "data")

    report = ingest_folder(str(root), data_dir=data)
    assert (report["added"], report["failed"], report["status"]) == (2, 0, "ok")
    again = ingest_folder(str(root), data_dir=data)
    assert (again["unchanged"], again["chunks_embedded"]) == (2, 0)

    artifact = Artifact.get("ragline-run-wiki")
    assert artifact is not None and "unchanged" in str(artifact.data)

    store = QdrantStore(path=tmp_path / "data" / "qdrant")
    try:
        assert store.count({"source": "wiki"}) == 2
    finally:
        store.close()
