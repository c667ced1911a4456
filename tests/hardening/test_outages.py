"""Outages on the real services: the ledger database, S3 (moto's server), the CRM and Qdrant go away
while a sync runs. Each test checks that the run fails (or retries) cleanly with a clear message and
the documented exit code, that nothing half-written is reported as indexed, that no cursor moves past
unindexed data, and that the next run, with the service back, leaves the full and correct index.

Redis going down under the query service is covered by
tests/query/test_ask_gateway.py::test_redis_down_the_service_answers_without_cache_and_readyz_says_so
(answers keep coming, uncached, and /readyz reports the cache as down); nothing is added here.
Qdrant failing mid-run on the embedded store is the lead's chaos test.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer
from typer.testing import CliRunner

from chunkers.token_chunker import TokenChunker
from connectors.hubspot import HubSpotConnector
from connectors.local import LocalFolderConnector
from connectors.s3 import S3Connector
from ragline import parsers
from ragline.cli import app
from ragline.config import Settings
from ragline.errors import LockLost, SourceBusy, SourceError
from ragline.ledger import Ledger
from ragline.pipeline import SyncOptions, sync_source
from stores.edge import EdgeStore
from tests.conftest import PG_ADMIN_URL, service_missing
from tests.support.crm_server import CrmServer
from tests.support.outages import (
    AfterDocuments,
    assert_complete,
    assert_consistent,
    closed_port,
    points_by_doc,
    PostgresDatabase,
    document_text,
    write_corpus,
)

pytestmark = pytest.mark.model
runner = CliRunner()

DOCS = 10
FAIL_AFTER = 3  # documents finished before the outage starts


def cli(*args: str, env: dict[str, str] | None = None):
    return runner.invoke(app, list(args), env=env)


@pytest.fixture
def pg_database():
    try:
        database = PostgresDatabase(PG_ADMIN_URL)
    except Exception as exc:  # noqa: BLE001 - no server: skip (or fail under RAGLINE_REQUIRE_SERVICES=1)
        service_missing("PostgreSQL", exc)
    yield database
    database.drop()


def sync(connector, store, ledger, embedder, chunker: TokenChunker, progress=None, **options: Any):
    return sync_source(connector, store=store, ledger=ledger, embedder=embedder, chunker=chunker,
                       options=SyncOptions(flush_chunks=1, **options), progress=progress)


@contextmanager
def index_of(data: Path, ledger_url: str | None = None) -> Iterator[tuple[Ledger, EdgeStore]]:
    """The ledger and embedded store that CLI runs with `--data-dir DATA` wrote (the ledger at
    `ledger_url` when the runs were given one)."""
    settings = Settings(data_dir=data)
    ledger, store = Ledger(ledger_url or settings.resolved_ledger_url), EdgeStore(path=settings.qdrant_path)
    try:
        yield ledger, store
    finally:
        store.close()
        ledger.close()


# -- the ledger database ------------------------------------------------------------------------


@pytest.mark.postgres
def test_ledger_database_going_away_mid_run_exits_3_and_the_next_run_completes(tmp_path, pg_database, monkeypatch):
    """PostgreSQL refuses connections and drops the run's sessions after FAIL_AFTER documents,
    through `ragline ingest`: exit 3 with a message that says what failed and that the next run resumes."""
    import ragline.cli as cli_module

    folder = tmp_path / "handbook"
    names = set(write_corpus(folder, DOCS))
    data = tmp_path / "data"
    env = {"RAGLINE_LEDGER_URL": pg_database.url, "RAGLINE_FLUSH_CHUNKS": "1"}
    advance = cli_module._RichProgress.advance
    calls = {"n": 0}

    def advance_then_fail(self, doc_id: str, action: str) -> None:
        advance(self, doc_id, action)
        calls["n"] += 1
        if calls["n"] == FAIL_AFTER:
            pg_database.go_down()

    monkeypatch.setattr(cli_module._RichProgress, "advance", advance_then_fail)
    stopped = cli("ingest", str(folder), "--data-dir", str(data), "--json", env=env)
    assert stopped.exit_code == 3, stopped.output
    message = json.loads(stopped.stdout)["error"]
    assert message.startswith(f"ingest stopped: the ledger database (postgresql+psycopg://127.0.0.1:5432/{pg_database.name}) "
                              "failed: OperationalError"), message
    assert "the next run resumes" in message and "[SQL:" not in message
    assert "postgres@" not in message  # no user or password of the connection URL

    pg_database.come_back()
    monkeypatch.setattr(cli_module._RichProgress, "advance", advance)
    with index_of(data, pg_database.url) as (ledger, store):
        docs = assert_consistent(store, ledger, "handbook")
        indexed = {d for d, doc in docs.items() if doc.status == "indexed"}
        assert len(indexed) == FAIL_AFTER, "documents after the outage were reported as indexed"

    resumed = cli("ingest", str(folder), "--data-dir", str(data), "--json", env=env)
    assert resumed.exit_code == 0, resumed.output
    [report] = json.loads(resumed.stdout)["runs"]
    assert (report["added"], report["unchanged"], report["failed"]) == (DOCS - FAIL_AFTER, FAIL_AFTER, 0)
    with index_of(data, pg_database.url) as (ledger, store):
        assert_complete(store, ledger, "handbook", names)


@pytest.mark.postgres
def test_ledger_sessions_killed_mid_run_leave_a_correct_index(tmp_path, pg_database, embedder, chunker):
    """A blip: every session of the run is terminated (pg_terminate_backend) while it runs, and the
    database stays up. Whatever the run makes of it, it ends with a clean outcome and the next run
    leaves the full index."""
    folder = tmp_path / "docs"
    names = set(write_corpus(folder, DOCS))
    ledger, store = Ledger(pg_database.url), EdgeStore(path=tmp_path / "qdrant")
    killed: list[int] = []
    try:
        connector = LocalFolderConnector(folder, name="docs", accept=parsers.is_supported)
        progress = AfterDocuments(FAIL_AFTER, lambda: killed.append(pg_database.drop_connections()))
        try:
            sync(connector, store, ledger, embedder, chunker, progress=progress)
        except Exception as exc:  # noqa: BLE001 - the database error itself is the clean outcome here
            assert isinstance(exc, LockLost) or type(exc).__module__.startswith("sqlalchemy"), f"unexpected {exc!r}"
        assert killed and killed[0] >= 1, "no session was terminated: the outage did not happen"
        assert_consistent(store, ledger, "docs")
        again = sync(connector, store, ledger, embedder, chunker)
        assert again.status == "ok"
        assert_complete(store, ledger, "docs", names)
    finally:
        store.close()
        ledger.close()


@pytest.mark.postgres
def test_a_run_whose_lock_session_dies_stops_before_writing_beside_the_run_that_took_the_lock(
    tmp_path, pg_database, embedder, chunker
):
    """The PostgreSQL lock lives on one session. Here that session is terminated mid-run and a second
    run takes the lock at once (it can: the lock died with the session). The first run must then write
    nothing more, neither ledger rows nor points (it stops with LockLost at its next write, and does not
    fail again releasing a lock that is gone); after the second run, the index completes."""
    folder = tmp_path / "docs"
    names = set(write_corpus(folder, DOCS))
    ledger, store = Ledger(pg_database.url), EdgeStore(path=tmp_path / "qdrant")
    other = Ledger(pg_database.url)
    second_run = ExitStack()
    when_taken: dict[str, Any] = {}

    def session_dies_and_a_second_run_takes_the_lock() -> None:
        pg_database.drop_connections()
        second_run.enter_context(other.source_lock("docs"))  # SourceBusy here would mean the lock outlived its session
        when_taken["rows"] = {(d.doc_id, d.status, d.updated_at) for d in other.documents("docs")}
        when_taken["points"] = dict(store.iter_points())

    try:
        connector = LocalFolderConnector(folder, name="docs", accept=parsers.is_supported)
        with pytest.raises(LockLost, match="lost its lock"):
            sync(connector, store, ledger, embedder, chunker,
                 progress=AfterDocuments(FAIL_AFTER, session_dies_and_a_second_run_takes_the_lock))
        assert len(when_taken["rows"]) >= FAIL_AFTER
        assert {(d.doc_id, d.status, d.updated_at) for d in other.documents("docs")} == when_taken["rows"]
        assert dict(store.iter_points()) == when_taken["points"]
        assert_consistent(store, ledger, "docs")
        with pytest.raises(SourceBusy):  # the second run still holds it
            sync(connector, store, ledger, embedder, chunker)
        second_run.close()
        again = sync(connector, store, ledger, embedder, chunker)
        assert again.status == "ok"
        assert_complete(store, ledger, "docs", names)
    finally:
        second_run.close()
        other.close()
        store.close()
        ledger.close()


# -- S3 ------------------------------------------------------------------------------------------

S3_CREDS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def moto_server(port: int = 0) -> ThreadedMotoServer:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server


@pytest.fixture
def s3_source(tmp_path):
    """moto's S3 server with a bucket of DOCS documents; yields (server, endpoint, bucket, doc ids)."""
    server = moto_server()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **S3_CREDS)
    bucket = f"outage-{tmp_path.name[-8:].lower().replace('_', '-')}"
    s3.create_bucket(Bucket=bucket)
    for i in range(DOCS):
        s3.put_object(Bucket=bucket, Key=f"docs/policy-{i:03d}.md", Body=document_text(i).encode())
    state = {"server": server, "port": port}
    yield state, endpoint, bucket, {f"policy-{i:03d}.md" for i in range(DOCS)}
    state["server"].stop()


def s3_connector(endpoint: str, bucket: str) -> S3Connector:
    return S3Connector("contracts", bucket=bucket, prefix="docs/", endpoint_url=endpoint, region="us-east-1",
                       access_key_id="testing", secret_access_key="testing", accept=parsers.is_supported,
                       max_attempts=2, connect_timeout=1, read_timeout=1)


def test_s3_going_away_mid_run_fails_the_source_and_the_next_run_completes(tmp_path, s3_source, embedder, chunker):
    state, endpoint, bucket, names = s3_source
    ledger, store = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}"), EdgeStore(path=tmp_path / "qdrant")
    try:
        connector = s3_connector(endpoint, bucket)
        started = time.monotonic()
        with pytest.raises(SourceError) as failed:
            sync(connector, store, ledger, embedder, chunker, progress=AfterDocuments(FAIL_AFTER, state["server"].stop))
        assert time.monotonic() - started < 60, "the run hung on the stopped server"
        reason = failed.value.reason
        assert endpoint in reason and "policy-003.md" in reason, reason  # where, and at which document
        assert "testing" not in reason
        docs = assert_consistent(store, ledger, "contracts")
        assert {d.status for d in docs.values()} <= {"indexed", "pending"}, "an outage was recorded as a bad document"
        assert sum(d.status == "indexed" for d in docs.values()) == FAIL_AFTER
        assert ledger.last_run("contracts")["status"] == "error"

        state["server"] = moto_server(state["port"])  # S3 is back, same address, same objects
        report = sync(s3_connector(endpoint, bucket), store, ledger, embedder, chunker)
        assert (report.status, report.added, report.failed) == ("ok", DOCS - FAIL_AFTER, 0)
        assert_complete(store, ledger, "contracts", names)
    finally:
        store.close()
        ledger.close()


class StallingProxy:
    """A TCP proxy in front of a server that, once `stall()` is called, accepts connections and
    reads requests but never answers: a network path that hangs instead of failing fast."""

    def __init__(self, target_port: int):
        import socket

        self.target_port = target_port
        self.stalled = threading.Event()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket

        while not self.closing:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            if self.stalled.is_set():
                threading.Thread(target=self._swallow, args=(client,), daemon=True).start()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _swallow(self, client) -> None:
        try:
            while not self.closing and client.recv(65536):
                pass
        except OSError:
            pass

    def _pipe(self, a, b) -> None:
        try:
            while not self.stalled.is_set():
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass

    def close(self) -> None:
        self.closing = True
        self.sock.close()


def test_s3_stalling_mid_run_times_out_cleanly_and_the_next_run_completes(tmp_path, s3_source, embedder, chunker):
    state, _, bucket, names = s3_source
    proxy = StallingProxy(state["port"])
    endpoint = f"http://127.0.0.1:{proxy.port}"
    ledger, store = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}"), EdgeStore(path=tmp_path / "qdrant")
    try:
        started = time.monotonic()
        with pytest.raises(SourceError, match="timed out|connection broke|could not|fetching"):
            sync(s3_connector(endpoint, bucket), store, ledger, embedder, chunker,
                 progress=AfterDocuments(FAIL_AFTER, proxy.stalled.set))
        assert time.monotonic() - started < 60
        docs = assert_consistent(store, ledger, "contracts")
        assert sum(d.status == "indexed" for d in docs.values()) == FAIL_AFTER
        assert all(d.status != "failed" for d in docs.values()), "a timeout was recorded as a bad document"

        proxy.stalled.clear()
        report = sync(s3_connector(endpoint, bucket), store, ledger, embedder, chunker)
        assert (report.status, report.added) == ("ok", DOCS - FAIL_AFTER)
        assert_complete(store, ledger, "contracts", names)
    finally:
        proxy.close()
        store.close()
        ledger.close()


# -- the CRM -------------------------------------------------------------------------------------

CRM_TOKEN = "pat-outage-test-token"


class StallingCrm(CrmServer):
    """The CRM test server, able to hang every answer for `stall_seconds` (a timing-out API)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.stalled = threading.Event()
        self.stall_seconds = 3.0

    def start(self) -> StallingCrm:
        super().start()
        # A client that timed out has closed its socket: the late answer's broken pipe is expected.
        self._httpd.handle_error = lambda request, address: None
        return self

    def handle(self, path, query, headers, **kwargs):
        if self.stalled.is_set():
            time.sleep(self.stall_seconds)
        return super().handle(path, query, headers, **kwargs)


def crm_connector(crm: CrmServer) -> HubSpotConnector:
    return HubSpotConnector("crm", base_url=crm.url, token=CRM_TOKEN, objects=["notes"], requests_per_second=0,
                            timeout=0.3, max_attempts=2, backoff=0.01, max_retry_time=3, clock=crm.now)


def test_crm_timing_out_mid_run_keeps_the_cursor_and_the_next_run_completes(tmp_path, embedder, chunker):
    with StallingCrm(token=CRM_TOKEN) as crm:
        ids = [crm.add("notes", {"hs_note_body": document_text(i)}) for i in range(DOCS)]
        names = {f"notes/{i}" for i in ids}
        ledger, store = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}"), EdgeStore(path=tmp_path / "qdrant")
        try:
            first = sync(crm_connector(crm), store, ledger, embedder, chunker)
            assert first.added == DOCS and ledger.cursor("crm") is not None
            cursor = ledger.cursor("crm")
            for i, record in enumerate(ids):
                crm.update("notes", record, hs_note_body=document_text(i) + " Revised.")
            try:
                report = sync(crm_connector(crm), store, ledger, embedder, chunker,
                              progress=AfterDocuments(FAIL_AFTER, crm.stalled.set))
            except SourceError as exc:
                assert "timed out" in exc.reason or "gave up" in exc.reason, exc.reason
            else:
                pytest.fail(f"the run finished as {report.status!r} with {report.failed} failed although the CRM timed out")
            assert ledger.cursor("crm") == cursor, "the cursor moved past records that were not indexed"
            assert_consistent(store, ledger, "crm")

            crm.stalled.clear()
            again = sync(crm_connector(crm), store, ledger, embedder, chunker)
            assert (again.status, again.failed) == ("ok", 0)
            assert_complete(store, ledger, "crm", names)
            texts: dict[str, str] = {}  # a record's chunks, joined: the revision is in its last chunk
            for _, payload in sorted(store.iter_points({"source": "crm"}), key=lambda p: p[1]["chunk_index"]):
                texts[payload["doc_id"]] = texts.get(payload["doc_id"], "") + payload["text"]
            stale = sorted(d for d, t in texts.items() if "Revised." not in t)
            assert not stale, f"records that kept their old text: {stale}"
        finally:
            store.close()
            ledger.close()


# -- Qdrant --------------------------------------------------------------------------------------


def test_the_store_failing_part_way_through_a_write_exits_3_and_the_next_run_completes(tmp_path, monkeypatch):
    """The vector store fails in the middle of a batch, after part of it is written (a failpoint in the
    real store's write loop, batches made small so every write has several parts): exit 3 naming the
    store, the ledger claims none of the half-written documents, and the next run leaves the full index."""
    import stores.edge as edge_store
    from ragline import failpoints

    folder = tmp_path / "handbook"
    names = set(write_corpus(folder, DOCS))
    data = tmp_path / "data"
    env = {"RAGLINE_FLUSH_CHUNKS": "4"}
    monkeypatch.setattr(edge_store, "UPSERT_BATCH", 2)
    failpoints.arm("upsert.inside:3:raise")
    try:
        failed = cli("ingest", str(folder), "--data-dir", str(data), "--json", env=env)
    finally:
        failpoints.arm(None)
    assert failed.exit_code == 3, failed.output
    message = json.loads(failed.stdout)["error"]
    assert "ingest stopped:" in message and "failed: FailpointError" in message, message
    assert str(Settings(data_dir=data).qdrant_path) in message, "the message does not say which store failed"

    with index_of(data) as (ledger, store):
        indexed = {d for d, doc in assert_consistent(store, ledger, "handbook").items() if doc.status == "indexed"}
        assert 0 < len(indexed) < DOCS, "the failure did not land in the middle of the run"
        assert set(points_by_doc(store, "handbook")) - indexed, "no batch was half written: the test proves little"

    resumed = cli("ingest", str(folder), "--data-dir", str(data), "--json", env=env)
    assert resumed.exit_code == 0, resumed.output
    with index_of(data) as (ledger, store):
        assert_complete(store, ledger, "handbook", names)


def test_qdrant_unreachable_fails_clearly_and_changes_nothing(tmp_path):
    folder = tmp_path / "handbook"
    names = set(write_corpus(folder, 4))
    data = tmp_path / "data"
    url = f"http://127.0.0.1:{closed_port()}"
    started = time.monotonic()
    down = cli("ingest", str(folder), "--data-dir", str(data), "--json",
               env={"QDRANT_URL": url, "QDRANT_API_KEY": "qdrant-outage-key"})
    assert time.monotonic() - started < 60
    assert down.exit_code in (2, 3), down.output
    message = json.loads(down.stdout)["error"]
    assert f"the Qdrant server at {url} failed" in message and "Connection refused" in message, message
    assert "qdrant-outage-key" not in down.output

    ledger = Ledger(Settings(data_dir=data).resolved_ledger_url)
    try:
        assert ledger.documents("handbook") == []
        last = ledger.last_run("handbook")
        assert last is None or last["status"] in ("error", "running") and not last["added"]
    finally:
        ledger.close()

    embedded = cli("ingest", str(folder), "--data-dir", str(data), "--json", env={"QDRANT_URL": "", "QDRANT_API_KEY": ""})
    assert embedded.exit_code == 0, embedded.output
    with index_of(data) as (ledger, store):
        assert_complete(store, ledger, "handbook", names)
