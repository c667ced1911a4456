"""Prefect flow around the blue/green re-index (ragline/reindex.py): one task, one table artifact.

The task is never retried: a re-index is expensive, and a failed one already cleaned up after itself.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.logging import get_run_logger

from ragline.offline import enforce_offline

enforce_offline()

from ragline.config import Settings
from ragline.reindex import reindex as reindex_index


def _settings(data_dir: str | None) -> Settings:
    return Settings(**({"data_dir": Path(data_dir)} if data_dir else {}))


@task(name="reindex", retries=0)
def reindex_task(model_path: str | None, model_window: int | None, chunk_tokens: int | None,
                 overlap_tokens: int | None, data_dir: str | None, config: str | None) -> dict[str, Any]:
    report = reindex_index(
        _settings(data_dir), model_path=model_path, model_window=model_window, chunk_tokens=chunk_tokens,
        overlap_tokens=overlap_tokens, config=Path(config) if config else None,
    )
    return report.to_dict()


def report_table(report: dict[str, Any]) -> list[dict[str, Any]]:
    before, after = report["spec_before"] or {}, report["spec_after"]
    rows = [
        {"what": "live name", "before": report["alias"], "after": report["alias"]},
        {"what": "collection", "before": report["old_collection"], "after": report["new_collection"]},
        *({"what": key, "before": before.get(key), "after": after[key]} for key in after),
        {"what": "points", "before": report["points_before"], "after": report["points"]},
        {"what": "documents", "before": None, "after": report["documents"]},
        {"what": "sample searches (own document first)", "before": None,
         "after": f"{report['sample_top_hits']}/{report['sample_queries']}"},
        {"what": "first migration gap (s)", "before": None, "after": report["gap_seconds"]},
        {"what": "old collection deleted", "before": None, "after": report["old_deleted"]},
        {"what": "seconds", "before": None, "after": report["seconds"]},
    ]
    rows.extend({"what": f"seconds: {stage}", "before": None, "after": s} for stage, s in report["timings"].items())
    for run in report["runs"]:
        rows.append({"what": f"source {run['source']}", "before": None,
                     "after": f"{run['added']} documents, {run['chunks_embedded']} chunks, {run['failed']} failed"})
    return [{k: ("" if v is None else str(v)) for k, v in row.items()} for row in rows]


@flow(name="ragline-reindex")
def reindex(
    model_path: str | None = None,
    model_window: int | None = None,
    chunk_tokens: int | None = None,
    overlap_tokens: int | None = None,
    data_dir: str | None = None,
    config: str | None = None,
) -> dict[str, Any]:
    """Rebuild every source into a new collection with a new model and/or chunking, then switch."""
    report = reindex_task(model_path, model_window, chunk_tokens, overlap_tokens, data_dir, config)
    create_table_artifact(
        key="ragline-reindex-" + re.sub(r"[^a-z0-9-]+", "-", report["alias"].lower()),
        table=report_table(report),
        description=f"ragline re-index of {report['alias']}: {report['old_collection']} -> {report['new_collection']}",
    )
    get_run_logger().info(
        "re-indexed %s: %s -> %s, %s -> %s points in %s s",
        report["alias"], report["old_collection"], report["new_collection"], report["points_before"],
        report["points"], report["seconds"],
    )
    return report
