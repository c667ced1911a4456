"""The `ragline` command line: ingest, search, status.

Human output goes to the terminal (progress on stderr); `--json` prints exactly one JSON
object on stdout instead. Exit codes: 0 done, 1 some documents failed, 2 nothing done
(bad arguments, refused run, unusable store), 3 the run stopped part-way (store or ledger error, a lost source lock).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ragline.offline import enforce_offline

enforce_offline()

from embedders.openai_compatible import EmbeddingError  # noqa: E402
from query.search import parse_filters, search  # noqa: E402
from ragline.components import (  # noqa: E402
    configured_sources,
    connectors_for,
    ledger_location,
    open_components,
    open_ledger,
    store_location,
)
from ragline.sources import build_connector, describe  # noqa: E402
from ragline.config import Settings  # noqa: E402
from ragline.errors import LockLost, MassDeleteRefused, RaglineError, SourceBusy, SourceError, first_line  # noqa: E402
from ragline.pipeline import RunReport, SyncOptions, sync_source  # noqa: E402

# No local variables in tracebacks: a frame's locals can hold a token, a key or a database URL with its password.
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False,
                  help="Incremental document ingestion into Qdrant.")
out = Console()
err = Console(stderr=True)

EXIT_FAILED_DOCUMENTS = 1
EXIT_NOTHING_DONE = 2
EXIT_RUN_ABORTED = 3

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", envvar="RAGLINE_DATA_DIR", help="Where the embedded store and ledger live \\[default: ./.ragline]"),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one machine-readable JSON object.")]
Collection = Annotated[str | None, typer.Option("--collection", help="Qdrant collection \\[default: ragline]")]
ChunkTokens = Annotated[int | None, typer.Option("--chunk-tokens", help="Chunk size in model tokens.")]
OverlapTokens = Annotated[int | None, typer.Option("--overlap-tokens", help="Overlap between chunks in tokens.")]
WaitForLock = Annotated[
    float, typer.Option("--wait-for-lock", min=0, help="Seconds to wait while another run of a source holds it \\[default: 0, exit].")
]
ConfigFile = Annotated[
    Path | None,
    typer.Option("--config", envvar="RAGLINE_CONFIG", help="Sources file \\[default: ./ragline.yaml if present]"),
]


def _settings(**overrides: Any) -> Settings:
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors())
        raise RaglineError(f"invalid settings: {problems}") from None


def _fail(message: str, as_json: bool, code: int = EXIT_NOTHING_DONE,
          finished: Sequence[RunReport] = ()) -> typer.Exit:
    """Print the error (after the reports of the sources that finished before it) and the exit to raise."""
    if as_json:
        print(json.dumps({"error": message, **({"runs": [r.to_dict() for r in finished]} if finished else {})}))
    else:
        for report in finished:
            _print_report(report)
        err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def _failed_part(exc: BaseException, settings: Settings | None) -> str | None:
    """Which part failed, named for the person who must bring it back: the vector store or the ledger,
    told by the deepest frame of the traceback that is in one of them (or by the client library's error type)."""
    if settings is None:
        return None
    part = None
    tb = exc.__traceback__
    while tb is not None:
        module = tb.tb_frame.f_globals.get("__name__", "")
        if module.startswith("stores."):
            part = "store"
        elif module == "ragline.ledger":
            part = "ledger"
        tb = tb.tb_next
    module = type(exc).__module__
    if module.startswith("qdrant_client"):
        part = "store"
    elif module.startswith("sqlalchemy") and part is None:
        part = "ledger"
    if part == "store":
        return store_location(settings)
    if part == "ledger":
        return f"the ledger database ({ledger_location(settings)})"
    return None

class _RichProgress:
    def __init__(self, progress: Progress):
        self.progress = progress
        self.task = None

    def planned(self, source: str, total: int) -> None:
        self.task = self.progress.add_task(f"{source}", total=total)

    def advance(self, doc_id: str, action: str) -> None:
        if self.task is not None:
            self.progress.update(self.task, advance=1, description=f"{action}: {doc_id[-40:]}")


def _print_report(report: RunReport) -> None:
    if report.dry_run and report.plan is not None:
        plan = report.plan
        out.print(
            f"[bold]{report.source}[/] dry run, nothing written: "
            f"would add {plan['add']}, update {plan['update']}, delete {plan['delete']}, "
            f"leave {plan['unchanged']} unchanged"
        )
        for action, doc_ids in plan["sample"].items():
            for doc_id in doc_ids:
                out.print(f"  {action:<6} {doc_id}", highlight=False)
        return
    table = Table(title=f"{report.source}: run {report.run_id} ({report.seconds:.1f} s)", title_justify="left")
    for column in ("added", "updated", "unchanged", "deleted", "failed", "chunks written", "of them reused",
                   "headers removed"):
        table.add_column(column, justify="right")
    table.add_row(*map(str, (report.added, report.updated, report.unchanged, report.deleted, report.failed,
                             report.chunks_embedded, report.chunks_reused, report.headers_removed)))
    out.print(table)
    if report.added + report.updated + report.deleted + report.failed == 0:
        out.print("Nothing changed: nothing was parsed or embedded.")
    for failure in report.failures:
        out.print(f"[red]failed[/] {failure.doc_id}: {failure.reason}", highlight=False)
    if report.still_failing:
        out.print(f"{report.still_failing} unchanged document(s) still failing from earlier runs (see `ragline status`).")
    for skipped in report.skipped:
        out.print(f"[yellow]skipped[/] {skipped['doc_id']}: {skipped['reason']}", highlight=False)


@app.command()
def ingest(
    folder: Annotated[Path | None, typer.Argument(help="Folder to index; omit to re-sync every known source.")] = None,
    source: Annotated[str | None, typer.Option("--source", help="Source name \\[default: the folder's name].")] = None,
    include: Annotated[list[str], typer.Option("--include", help="Glob of files to take, repeatable.")] = [],
    exclude: Annotated[list[str], typer.Option("--exclude", help="Glob of files to leave out, repeatable.")] = [],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; write nothing.")] = False,
    allow_mass_delete: Annotated[bool, typer.Option("--allow-mass-delete", help="Allow deleting more than the max share of a source.")] = False,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Retry documents that failed before even if unchanged.")] = False,
    full_listing: Annotated[bool, typer.Option("--full-listing", help="List every document even where a cursor allows listing only changes.")] = False,
    wait_for_lock: WaitForLock = 0.0,
    chunk_tokens: ChunkTokens = None,
    overlap_tokens: OverlapTokens = None,
    config: ConfigFile = None,
    collection: Collection = None,
    data_dir: DataDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Sync FOLDER, or the sources of the config file; only what changed since the last run is processed."""
    _run_syncs(
        lambda settings: SyncOptions(dry_run=dry_run, allow_mass_delete=allow_mass_delete, retry_failed=retry_failed,
                                     full_listing=full_listing, max_delete_share=settings.max_delete_share,
                                     flush_chunks=settings.flush_chunks, lock_wait_seconds=wait_for_lock),
        dict(data_dir=data_dir, collection=collection, chunk_tokens=chunk_tokens, overlap_tokens=overlap_tokens),
        dict(folder=folder, source=source, config=config, include=include, exclude=exclude),
        as_json,
    )


def _run_syncs(make_options, setting_overrides: dict[str, Any], scope: dict[str, Any], as_json: bool) -> None:
    """Sync each source in `scope` in turn; print the reports; exit with the documented code."""
    settings: Settings | None = None
    reports: list[RunReport] = []
    try:
        settings = _settings(**setting_overrides)
        options = make_options(settings)
        refused: list[str] = []
        source_errors: list[str] = []
        with open_components(settings) as components:
            for connector in connectors_for(components, **scope):
                with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                              console=err, disable=as_json or not err.is_terminal, transient=True) as bar:
                    try:
                        reports.append(sync_source(connector, store=components.store, ledger=components.ledger,
                                                   embedder=components.embedder, chunker=components.chunker,
                                                   parse=components.parse,
                                                   options=options, progress=_RichProgress(bar)))
                    except MassDeleteRefused as exc:
                        refused.append(str(exc))
                    except (SourceError, SourceBusy) as exc:  # nothing of this source was deleted; the next run resumes
                        source_errors.append(str(exc))
                    finally:
                        getattr(connector, "close", lambda: None)()
    except EmbeddingError as exc:  # the embedding endpoint failed mid-run: like a store failure, nothing is lost
        raise _fail(f"ingest stopped: {exc}. Documents finished before the error are indexed; "
                    "the next run resumes from there.", as_json, EXIT_RUN_ABORTED, reports) from None
    except LockLost as exc:  # its message says what was kept and that the next run finishes
        raise _fail(f"ingest stopped: {exc}", as_json, EXIT_RUN_ABORTED, reports) from None
    except RaglineError as exc:
        raise _fail(str(exc), as_json, finished=reports) from None
    except Exception as exc:  # the store or ledger failed mid-run: report it plainly, lose nothing
        failed_part = _failed_part(exc, settings)
        raise _fail(
            f"ingest stopped: {failed_part + ' failed: ' if failed_part else ''}{type(exc).__name__}: "
            f"{first_line(exc)}. Documents finished before the error are indexed; the next run resumes from there.",
            as_json,
            EXIT_RUN_ABORTED,
            reports,
        ) from None

    failed = any(r.failures for r in reports)
    if as_json:
        print(json.dumps({"runs": [r.to_dict() for r in reports], "refused": refused, "source_errors": source_errors,
                          "ok": not failed and not refused and not source_errors}))
    else:
        for report in reports:
            _print_report(report)
        for message in refused:
            err.print(f"[bold red]refused:[/] {message}", highlight=False)
        for message in source_errors:
            err.print(f"[bold red]source not synced (nothing deleted; the next run resumes):[/] {message}", highlight=False)
    if refused or source_errors:
        raise typer.Exit(EXIT_NOTHING_DONE)
    if failed:
        if not as_json:
            err.print(f"[red]{sum(r.failed for r in reports)} document(s) failed; see above.[/]")
        raise typer.Exit(EXIT_FAILED_DOCUMENTS)


def _when(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise RaglineError(f"{option} {value!r} is not an ISO date or time (e.g. 2026-01-31 or 2026-01-31T12:00)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@app.command()
def backfill(
    source: Annotated[str | None, typer.Option("--source", help="Source to backfill \\[default: every source].")] = None,
    since: Annotated[str | None, typer.Option("--since", help="Only documents modified at or after this (ISO date/time, UTC if no zone).")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Only documents modified before this.")] = None,
    full_reindex: Annotated[bool, typer.Option("--full-reindex", help="Re-ingest every document of the source.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; write nothing.")] = False,
    wait_for_lock: WaitForLock = 0.0,
    config: ConfigFile = None,
    collection: Collection = None,
    data_dir: DataDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Re-ingest a source's documents modified in [--since, --until), or all of them with --full-reindex.

    A windowed backfill lists only its window: it deletes nothing and leaves the source's cursor alone.
    """
    try:
        window = (_when(since, "--since"), _when(until, "--until"))
        if full_reindex and window != (None, None):
            raise RaglineError("--full-reindex re-ingests everything; it takes no --since/--until")
        if not full_reindex and window == (None, None):
            raise RaglineError("give a window (--since and/or --until) or --full-reindex")
    except RaglineError as exc:
        raise _fail(str(exc), as_json) from None
    _run_syncs(
        lambda settings: SyncOptions(dry_run=dry_run, force=True, full_listing=full_reindex,
                                     window=None if full_reindex else window,
                                     max_delete_share=settings.max_delete_share, flush_chunks=settings.flush_chunks,
                                     lock_wait_seconds=wait_for_lock),
        dict(data_dir=data_dir, collection=collection),
        dict(source=source, config=config),
        as_json,
    )


@app.command("search")
def search_command(
    question: Annotated[str, typer.Argument(help="What to look for.")],
    k: Annotated[int, typer.Option("-k", "--k", min=1, max=100, help="How many chunks.")] = 5,
    filters: Annotated[list[str], typer.Option("--filter", help="key=value on chunk metadata (source, doc_id, title...), repeatable.")] = [],
    collection: Collection = None,
    data_dir: DataDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Print the chunks nearest to QUESTION, with source path, page and score."""
    try:
        settings = _settings(data_dir=data_dir, collection=collection)
        conditions = parse_filters(filters)
        with open_components(settings) as components:
            hits = search(question, embedder=components.embedder, store=components.store, k=k, filters=conditions)
    except RaglineError as exc:
        raise _fail(str(exc), as_json) from None
    rows = [
        {
            "id": h.id,
            "score": round(h.score, 4),
            "source": h.payload.get("source"),
            "doc_id": h.payload.get("doc_id"),
            "uri": h.payload.get("uri"),
            "title": h.payload.get("title"),
            "section": h.payload.get("section"),
            "page_start": h.payload.get("page_start"),
            "page_end": h.payload.get("page_end"),
            "chunk_index": h.payload.get("chunk_index"),
            "text": h.text,
        }
        for h in hits
    ]
    if as_json:
        print(json.dumps({"question": question, "k": k, "filters": conditions.model_dump(mode="json", exclude_defaults=True), "hits": rows}))
        return
    if not rows:
        out.print("No results (is anything ingested? try `ragline status`).")
    for rank, row in enumerate(rows, 1):
        pages = row["page_start"] if row["page_start"] == row["page_end"] else f"{row['page_start']}-{row['page_end']}"
        out.print(f"[bold]{rank}. {row['source']}:{row['doc_id']}[/]  page {pages}  score {row['score']:.3f}", highlight=False)
        if row["section"]:
            out.print(f"   [dim]{row['section']}[/]", highlight=False)
        snippet = " ".join(row["text"].split())
        out.print(f"   {snippet[:400]}{'…' if len(snippet) > 400 else ''}", highlight=False)


@app.command()
def status(
    collection: Collection = None,
    data_dir: DataDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Per source: documents, chunks, last run and failures."""
    try:
        settings = _settings(data_dir=data_dir, collection=collection)
        with open_components(settings) as components:
            ledger, store = components.ledger, components.store
            spec = store.spec()
            sources = []
            for src in ledger.sources():
                summary = ledger.source_summary(src["name"])
                last = ledger.last_run(src["name"])
                sources.append({
                    "name": src["name"], "kind": src["kind"], "location": src["location"], **summary,
                    "points": store.count({"source": src["name"]}),
                    "cursor": ledger.cursor(src["name"]),
                    "last_run": None if last is None else {
                        k: last[k] for k in ("id", "started_at", "finished_at", "status", "added", "updated",
                                             "unchanged", "deleted", "failed", "chunks", "seconds")
                    },
                })
            result = {
                "data_dir": str(settings.data_dir),
                "collection": {"name": store.collection, "location": store.location, "points": store.count(),
                               "spec": None if spec is None else spec.__dict__},
                "sources": sources,
            }
    except RaglineError as exc:
        raise _fail(str(exc), as_json) from None
    if as_json:
        print(json.dumps(result, default=str))
        return
    coll = result["collection"]
    out.print(f"collection [bold]{coll['name']}[/] at {coll['location']}: {coll['points']} points", highlight=False)
    if spec:
        out.print(f"  built by {spec.model} (window {spec.window}), chunks of {spec.chunk_tokens} tokens, overlap {spec.overlap_tokens}")
    if not sources:
        out.print("No sources yet: ragline ingest FOLDER")
    for src in sources:
        last = src["last_run"]
        when = f"{last['finished_at'] or last['started_at']} ({last['status']})" if last else "never"
        out.print(
            f"[bold]{src['name']}[/] ({src['kind']} {src['location']}): {src['documents']} documents, "
            f"{src['chunks']} chunks, {src['failed']} failed; last run {when}",
            highlight=False,
        )
        for failure in src["failures"]:
            out.print(f"  [red]failed[/] {failure['doc_id']}: {failure['error']}", highlight=False)


@app.command()
def reindex(
    model_path: Annotated[Path | None, typer.Option("--model-path", help="sentence-transformers model folder \\[default: the current one].")] = None,
    model_window: Annotated[int | None, typer.Option("--model-window", help="The model's input window in tokens.")] = None,
    chunk_tokens: ChunkTokens = None,
    overlap_tokens: OverlapTokens = None,
    config: ConfigFile = None,
    collection: Collection = None,
    data_dir: DataDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Rebuild every source into a new collection (new model or chunking), check it, then switch.

    Queries keep the old collection until the switch, an atomic move of the collection alias;
    a rebuild that fails leaves the live index as it was.
    """
    from ragline.reindex import reindex as rebuild

    try:
        settings = _settings(data_dir=data_dir, collection=collection)
        report = rebuild(settings, model_path=model_path, model_window=model_window, chunk_tokens=chunk_tokens,
                         overlap_tokens=overlap_tokens, config=config)
    except RaglineError as exc:
        raise _fail(str(exc), as_json) from None
    result = report.to_dict()
    if as_json:
        print(json.dumps(result, default=str))
        return
    out.print(
        f"[bold]{report.alias}[/] now points at {report.new_collection} ({report.points} points, "
        f"{report.documents} documents; before: {report.points_before} points in {report.old_collection}) "
        f"in {report.seconds:.1f} s",
        highlight=False,
    )


sources_app = typer.Typer(no_args_is_help=True, help="The sources of the config file.")
app.add_typer(sources_app, name="sources")

CHECK_SAMPLE = 20


@sources_app.command("list")
def sources_list(config: ConfigFile = None, as_json: JsonFlag = False) -> None:
    """Name, kind and location of every configured source (no secrets, no connections)."""
    try:
        configured = configured_sources(config)
    except RaglineError as exc:
        raise _fail(str(exc), as_json) from None
    rows = [{"name": name, "kind": cfg.kind, "location": describe(cfg)} for name, cfg in configured.items()]
    if as_json:
        print(json.dumps({"sources": rows}))
        return
    if not rows:
        out.print("No sources configured (ragline.yaml; see examples/ragline.yaml).")
    for row in rows:
        out.print(f"[bold]{row['name']}[/] ({row['kind']}) {row['location']}", highlight=False)


@sources_app.command("check")
def sources_check(
    name: Annotated[str, typer.Argument(help="Configured source to check.")],
    config: ConfigFile = None,
    as_json: JsonFlag = False,
) -> None:
    """Connect to NAME, list its first documents, and report what was seen. Writes nothing."""
    started = time.perf_counter()
    result: dict[str, Any] = {"name": name, "ok": False, "seen": 0, "sample": [], "error": None}
    try:
        configured = configured_sources(config)
        if name not in configured:
            raise RaglineError(f"no source named {name!r} in the config file")
        result["kind"] = configured[name].kind
        connector = build_connector(name, configured[name])
        try:
            for ref in connector.list():
                result["seen"] += 1
                result["sample"].append({"doc_id": ref.doc_id, "fingerprint": ref.fingerprint, "size": ref.size})
                if result["seen"] >= CHECK_SAMPLE:
                    break
            result["ok"] = True
        finally:
            getattr(connector, "close", lambda: None)()
    except RaglineError as exc:
        result["error"] = str(exc)
    result["seconds"] = round(time.perf_counter() - started, 3)
    if as_json:
        print(json.dumps(result, default=str))
    elif result["ok"]:
        more = " (first ones only)" if result["seen"] >= CHECK_SAMPLE else ""
        out.print(f"[green]ok[/] {name}: listed {result['seen']} documents{more} in {result['seconds']} s", highlight=False)
        for item in result["sample"]:
            out.print(f"  {item['doc_id']}  {item['fingerprint']}", highlight=False)
    else:
        err.print(f"[bold red]error:[/] {result['error']}", highlight=False)
    if not result["ok"]:
        raise typer.Exit(EXIT_NOTHING_DONE)


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")] = 8000,
    config: ConfigFile = None,
    collection: Collection = None,
    data_dir: DataDir = None,
) -> None:
    """Serve the query API (/v1/search, /v1/ask, /healthz, /readyz, /metrics) over HTTP."""
    import uvicorn

    from query.api import create_app
    from query.service import open_service

    try:
        settings = _settings(data_dir=data_dir, collection=collection)
        with open_service(settings, config) as service:
            application = create_app(service)
            err.print(f"ragline query API on http://{host}:{port} (OpenAPI: /docs)", highlight=False)
            uvicorn.run(application, host=host, port=port, log_level="warning", access_log=False)
    except RaglineError as exc:
        raise _fail(str(exc), False) from None


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question to answer from the indexed documents.")],
    k: Annotated[int, typer.Option("-k", "--k", min=1, max=100, help="How many chunks to use as context.")] = 5,
    filters: Annotated[list[str], typer.Option("--filter", help="key=value on chunk metadata, repeatable.")] = [],
    model: Annotated[str | None, typer.Option("--model", help="Preferred provider or model name.")] = None,
    config: ConfigFile = None,
    collection: Collection = None,
    data_dir: DataDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Answer QUESTION in-process, exactly as POST /v1/ask would, with citations."""
    from query.service import LOCAL_CALLER, open_service

    try:
        settings = _settings(data_dir=data_dir, collection=collection)
        conditions = parse_filters(filters)
        with open_service(settings, config) as service:
            started = time.perf_counter()
            outcome = service.ask(question, k=k, filters=conditions, caller=LOCAL_CALLER, model=model)
            service.record("cli:ask", LOCAL_CALLER, question, outcome, 200, time.perf_counter() - started)
    except RaglineError as exc:
        raise _fail(str(exc), as_json) from None
    body = outcome.body
    if as_json:
        print(json.dumps(body, default=str))
        return
    out.print(body["answer"], highlight=False)
    out.print(f"[dim]model: {body['model']} (route {body['route']['name']}: {body['route']['reason']})"
              f"{' - from cache' if body['cached'] else ''}[/]", highlight=False)
    for citation in body["citations"]:
        pages = citation["page_start"] if citation["page_start"] == citation["page_end"] else f"{citation['page_start']}-{citation['page_end']}"
        out.print(f"  [{citation['n']}] {citation['source']}:{citation['doc_id']} page {pages}", highlight=False)
    for warning in body["warnings"]:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)


audit_app = typer.Typer(no_args_is_help=True, help="The audit trail of the query service.")
app.add_typer(audit_app, name="audit")


@audit_app.command("verify")
def audit_verify(
    expect_head: Annotated[str | None, typer.Option("--expect-head", help="SEQ:HASH recorded earlier; the chain must still reach it.")] = None,
    data_dir: DataDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Check that no audit entry was edited, deleted or reordered. Exit 1 when one was."""
    from query.audit import AuditLog

    try:
        settings = _settings(data_dir=data_dir)
        anchor = None
        if expect_head is not None:
            seq, sep, digest = expect_head.partition(":")
            if not sep or not seq.isdigit():
                raise RaglineError(f"--expect-head {expect_head!r} is not of the form SEQ:HASH")
            anchor = (int(seq), digest)
        ledger = open_ledger(settings)  # its connection settings (SQLite's busy timeout) apply here too
        try:
            report = AuditLog(ledger.engine).verify(expect_head=anchor)
        finally:
            ledger.close()
    except RaglineError as exc:
        raise _fail(str(exc), as_json) from None
    if as_json:
        print(json.dumps({"ok": report.ok, "entries": report.entries, "head": report.head, "head_seq": report.head_seq,
                          "problems": report.problems}))
    elif report.ok:
        out.print(f"[green]ok[/] {report.entries} audit entries, chain intact; head {report.head_seq}:{report.head}", highlight=False)
    else:
        for problem in report.problems:
            err.print(f"[bold red]tampered:[/] {problem}", highlight=False)
    if not report.ok:
        raise typer.Exit(EXIT_FAILED_DOCUMENTS)


def main() -> None:  # pragma: no cover - console entry for `python -m ragline`
    logging.basicConfig(level=logging.ERROR)
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
