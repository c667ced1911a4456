"""Prefect flow around the plain sync pipeline: one task per source, a report artifact per run.

Prefect stays in this package; everything the tasks do is in ragline/ and tested directly.
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

from ragline.components import local_connector, open_components  # noqa: E402
from ragline.config import Settings  # noqa: E402
from ragline.pipeline import SyncOptions, sync_source  # noqa: E402


@task(name="sync-folder")
def sync_folder_task(
    folder: str, source: str | None, data_dir: str | None, dry_run: bool, allow_mass_delete: bool
) -> dict[str, Any]:
    settings = Settings(**({"data_dir": Path(data_dir)} if data_dir else {}))
    options = SyncOptions(
        dry_run=dry_run,
        allow_mass_delete=allow_mass_delete,
        max_delete_share=settings.max_delete_share,
        flush_chunks=settings.flush_chunks,
    )
    with open_components(settings) as components:
        report = sync_source(
            local_connector(settings, folder, name=source),
            store=components.store,
            ledger=components.ledger,
            embedder=components.embedder,
            chunker=components.chunker,
            options=options,
        )
    return report.to_dict()


def report_table(report: dict[str, Any]) -> list[dict[str, Any]]:
    rows = [{"what": action, "count": report[action]} for action in ("added", "updated", "unchanged", "deleted", "failed")]
    rows.append({"what": "chunks embedded", "count": report["chunks_embedded"]})
    rows.append({"what": "seconds", "count": report["seconds"]})
    rows.extend({"what": f"failed: {f['doc_id']}", "count": f["reason"]} for f in report["failures"])
    return rows


@flow(name="ragline-ingest-folder", log_prints=True)
def ingest_folder(
    folder: str,
    source: str | None = None,
    data_dir: str | None = None,
    dry_run: bool = False,
    allow_mass_delete: bool = False,
) -> dict[str, Any]:
    """Incremental sync of one local folder; returns the run report."""
    logger = get_run_logger()
    report = sync_folder_task(folder, source, data_dir, dry_run, allow_mass_delete)
    create_table_artifact(
        key="ragline-run-" + re.sub(r"[^a-z0-9-]+", "-", report["source"].lower()),
        table=report_table(report),
        description=f"ragline run {report['run_id']} of {report['source']}: {report['status']}",
    )
    logger.info(
        "%s: added %s, updated %s, unchanged %s, deleted %s, failed %s",
        report["source"], report["added"], report["updated"], report["unchanged"], report["deleted"], report["failed"],
    )
    return report


