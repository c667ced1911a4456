"""Prefect flows around the plain sync pipeline: `sync` (the nightly default) and `backfill`.

One task per source, tagged `source:NAME` (a Prefect tag concurrency limit of 1 queues a second
run of a source; the ledger's per-source lock guarantees it either way). Each run publishes its
report as a table artifact. A source that fails (after its retries) does not stop the others: its
artifact says why, and the flow run fails at the end. Prefect stays in this package; the tasks call
ragline's functions.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.logging import get_run_logger
from prefect.tasks import exponential_backoff

from ragline.offline import enforce_offline

enforce_offline()

from ragline.components import connectors_for, open_components  # noqa: E402
from ragline.config import Settings  # noqa: E402
from ragline.errors import RaglineError, first_line  # noqa: E402
from ragline.pipeline import SyncOptions, sync_source  # noqa: E402


def retryable(task, task_run, state) -> bool:
    """Retry outages (a store or network that failed), never ragline's own verdicts: a refused
    mass delete, a busy source, bad settings or a source that rejected our credentials."""
    try:
        state.result()
    except RaglineError:
        return False
    except Exception:  # noqa: BLE001 - a connection, timeout or store client error may pass
        return True
    return False


def _settings(data_dir: str | None) -> Settings:
    return Settings(**({"data_dir": Path(data_dir)} if data_dir else {}))


@task(name="source-names")
def source_names(source: str | None, folder: str | None, config: str | None, data_dir: str | None) -> list[str]:
    """Which sources this run covers (the connectors themselves are built inside each task)."""
    with open_components(_settings(data_dir)) as components:
        connectors = connectors_for(components, folder=folder, source=source, config=Path(config) if config else None)
        names = [c.name for c in connectors]
        for connector in connectors:
            getattr(connector, "close", lambda: None)()
    return names


@task(name="sync-source", retries=2, retry_delay_seconds=exponential_backoff(backoff_factor=30),
      retry_jitter_factor=0.5, retry_condition_fn=retryable)
def sync_source_task(source: str, folder: str | None, config: str | None, data_dir: str | None,
                     options: dict[str, Any], dask_address: str | None = None,
                     dask_batch_docs: int = 32) -> dict[str, Any]:
    """One source's sync. With `dask_address`, documents are prepared and embedded on that Dask
    cluster (flows/dask_runner.py); this process still does every write."""
    settings = _settings(data_dir)
    with open_components(settings) as components, ExitStack() as stack:
        [connector] = connectors_for(components, folder=folder, source=source,
                                     config=Path(config) if config else None)
        stack.callback(getattr(connector, "close", lambda: None))
        preparer = None
        if dask_address:
            from flows.dask_runner import ConnectorRecipe, DaskPreparer, ModelRecipe

            preparer = stack.enter_context(DaskPreparer(
                dask_address, ConnectorRecipe.of(connector, config), ModelRecipe.from_settings(components.settings),
                batch_docs=dask_batch_docs,
            ))
        report = sync_source(
            connector, store=components.store, ledger=components.ledger, embedder=components.embedder,
            chunker=components.chunker, parse=components.parse,
            options=SyncOptions(max_delete_share=settings.max_delete_share, flush_chunks=settings.flush_chunks,
                                **options),
            preparer=preparer,
        )
    return report.to_dict()


def report_table(report: dict[str, Any]) -> list[dict[str, Any]]:
    rows = [{"what": action, "count": report[action]} for action in ("added", "updated", "unchanged", "deleted", "failed")]
    rows.append({"what": "chunks written", "count": report["chunks_embedded"]})
    rows.append({"what": "chunks reused from the embedding cache", "count": report["chunks_reused"]})
    rows.append({"what": "chunks per second", "count": report["chunks_per_second"]})
    rows.append({"what": "seconds", "count": report["seconds"]})
    rows.extend({"what": f"seconds: {stage}", "count": seconds} for stage, seconds in report["timings"].items())
    rows.extend({"what": f"failed: {f['doc_id']}", "count": f["reason"]} for f in report["failures"])
    return rows


def _run(flow_name: str, names: list[str], folder: str | None, config: str | None, data_dir: str | None,
         options: dict[str, Any], dask_address: str | None = None, dask_batch_docs: int = 32) -> list[dict[str, Any]]:
    logger = get_run_logger()
    reports = []
    failures: list[tuple[str, BaseException]] = []
    for name in names:
        key = f"ragline-{flow_name}-" + re.sub(r"[^a-z0-9-]+", "-", name.lower())
        state = sync_source_task.with_options(tags=[f"source:{name}"])(
            name, folder, config, data_dir, options, dask_address, dask_batch_docs, return_state=True
        )
        outcome = state.result(raise_on_failure=False)
        if isinstance(outcome, BaseException):  # the next source still runs; this one's artifact says why
            message = f"{type(outcome).__name__}: {first_line(outcome)}"
            create_table_artifact(key=key, table=[{"what": "error", "count": message}],
                                  description=f"ragline {flow_name} of {name}: stopped")
            logger.error("%s: stopped: %s", name, message)
            failures.append((name, outcome))
            continue
        report = outcome
        create_table_artifact(
            key=key,
            table=report_table(report),
            description=f"ragline {flow_name} run {report['run_id']} of {name}: {report['status']}",
        )
        logger.info(
            "%s: added %s, updated %s, unchanged %s, deleted %s, failed %s (%s s)",
            name, report["added"], report["updated"], report["unchanged"], report["deleted"], report["failed"],
            report["seconds"],
        )
        reports.append(report)
    if len(failures) == 1:
        raise failures[0][1]
    if failures:
        raise RaglineError(f"{len(failures)} of {len(names)} sources stopped: "
                           + "; ".join(f"{name}: {first_line(exc)}" for name, exc in failures))
    return reports


@flow(name="ragline-sync")
def sync(
    source: str | None = None,
    folder: str | None = None,
    config: str | None = None,
    data_dir: str | None = None,
    dry_run: bool = False,
    full_listing: bool = False,
    allow_mass_delete: bool = False,
    dask_address: str | None = None,
    dask_workers: int = 0,
    dask_batch_docs: int = 32,
) -> list[dict[str, Any]]:
    """The incremental sync (the schedules' default): one source, a folder, or every source.

    Scale-out: `dask_address` (an existing Dask scheduler) or `dask_workers` (a LocalCluster of that
    many single-threaded worker processes, for this run) parse and embed on Dask through
    prefect-dask's DaskTaskRunner, `dask_batch_docs` documents per Dask task; so does a flow run
    given a DaskTaskRunner (`sync.with_options(task_runner=...)`).
    """
    names = source_names(source, folder, config, data_dir)
    options = {"dry_run": dry_run, "full_listing": full_listing, "allow_mass_delete": allow_mass_delete}
    with _dask(dask_address, dask_workers) as address:
        return _run("sync", names, folder, config, data_dir, options, address, dask_batch_docs)


@contextmanager
def _dask(address: str | None, workers: int) -> Iterator[str | None]:
    """The scheduler address to prepare on: the one given, a LocalCluster of `workers` started
    (and stopped) here, the flow's own DaskTaskRunner's, or None (prepare in this process)."""
    if address or workers > 0:
        from flows.dask_runner import dask_task_runner

        with dask_task_runner(address, workers) as runner:
            scheduler = runner.client.scheduler.address
            get_run_logger().info("preparing and embedding on the Dask cluster at %s", scheduler)
            yield scheduler
        return
    from flows.dask_runner import runner_address

    yield runner_address()


@flow(name="ragline-backfill")
def backfill(
    source: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    full_reindex: bool = False,
    dry_run: bool = False,
    config: str | None = None,
    data_dir: str | None = None,
) -> list[dict[str, Any]]:
    """Re-ingest documents modified in [since, until), or everything with `full_reindex`.
    A windowed backfill never deletes and never moves a source's cursor."""
    if full_reindex == (since is not None or until is not None):
        raise ValueError("give a window (since and/or until) or full_reindex=True, not both or neither")
    names = source_names(source, None, config, data_dir)
    window = tuple(t if t is None or t.tzinfo else t.replace(tzinfo=UTC) for t in (since, until))
    options = {"dry_run": dry_run, "force": True, "full_listing": full_reindex,
               "window": None if full_reindex else window}
    return _run("backfill", names, None, config, data_dir, options)
