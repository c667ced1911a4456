"""The re-index flow wraps ragline.reindex.reindex: run it against a Prefect test harness."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.prefect, pytest.mark.model]


def test_reindex_flow_switches_and_publishes_a_report(prefect_harness, tmp_path):
    from prefect.artifacts import Artifact

    from flows.reindex import reindex
    from flows.sync import sync
    from ragline.components import build_store
    from ragline.config import Settings

    root = tmp_path / "wiki"
    root.mkdir()
    (root / "a.md").write_text("# Returns\n\n" + "Customers may return unworn boots within 60 days. " * 40)
    (root / "b.txt").write_text("The warehouse ships orders placed before 2 pm the same day.")
    data = str(tmp_path / "data")
    [synced] = sync(folder=str(root), data_dir=data)
    assert synced["added"] == 2

    report = reindex(chunk_tokens=100, overlap_tokens=10, data_dir=data)
    assert report["old_collection"] == "ragline" and report["new_collection"].startswith("ragline--")
    assert report["spec_before"]["chunk_tokens"] == 250 and report["spec_after"]["chunk_tokens"] == 100
    assert report["points"] > report["points_before"] == synced["chunks_embedded"]
    artifact = Artifact.get("ragline-reindex-ragline")
    assert artifact is not None and report["new_collection"] in str(artifact.data)

    store = build_store(Settings(data_dir=tmp_path / "data"))
    try:
        assert store.alias_target() == report["new_collection"] and store.count() == report["points"]
    finally:
        store.close()

    from ragline.errors import ConfigError

    with pytest.raises(ConfigError):
        reindex(chunk_tokens=1000, data_dir=data)  # more than the model's window: refused, nothing changed
