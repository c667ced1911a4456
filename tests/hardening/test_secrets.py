"""No secret leaks: every kind of credential ragline holds gets a distinct, recognisable value, runs are
made to fail on purpose against hostile servers that echo back whatever they are sent, and then
everything ragline wrote is searched for the secrets: stdout and stderr of `ragline` processes, log
records (our own loggers down to DEBUG, everyone's from INFO), every table of the ledger (run reports,
errors, sources, the audit trail), the query API's answers, and what the Prefect flows publish
(artifacts, flow logs, run states).

Also here: the SQL connector binds every runtime value (hostile doc ids, cursors, window dates) and
builds no SQL text from runtime values (a static check of connectors/sql.py).
"""

from __future__ import annotations

import ast
import json
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from pydantic import SecretStr
from typer.testing import CliRunner

from connectors.local import LocalFolderConnector
from connectors.sql import SqlConnector, encode_cursor
from embedders.sentence_transformer import bundled_model_path
from ragline import parsers
from ragline.cli import app
from ragline.config import Settings
from ragline.errors import FetchError, RaglineError, SourceError
from ragline.ledger import Ledger
from ragline.pipeline import SyncOptions, sync_source
from ragline.types import DocRef
from stores.edge import EdgeStore
from tests.conftest import PG_ADMIN_URL, service_missing
from tests.support.echo_server import EchoServer
from tests.support.outages import closed_port, write_corpus

pytestmark = [pytest.mark.model, pytest.mark.postgres]
REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()

SECRETS = {
    "query API key": "rk-api-SECRET-a1b2c3d4",
    "wrong query API key sent by a client": "rk-wrong-SECRET-e5f6g7h8",
    "ledger database password": "pgpass-SECRET-i9j0k1l2",
    "CRM token": "pat-crm-SECRET-m3n4o5p6",
    "S3 access key id": "AKIASECRETQ7R8S9T0U1",
    "S3 secret access key": "s3key-SECRET-v2w3x4y5",
    "Qdrant API key": "qdrant-SECRET-z6a7b8c9",
    "LLM API key": "llm-SECRET-d0e1f2g3",
    "embedding API key": "embed-SECRET-h4i5j6k7",
    "Redis password": "redis-SECRET-l8m9n0o1",
}


def leaks(text: str) -> list[str]:
    """Secrets found in `text`, whole or by their random tail (a partly masked key still leaks)."""
    found = []
    for name, value in SECRETS.items():
        tail = value[-8:]
        if value in text or tail in text:
            at = text.find(value) if value in text else text.find(tail)
            found.append(f"{name} in ...{text[max(0, at - 80):at + 40]!r}...")
    return found


class Evidence:
    """Everything ragline wrote, by where it was written."""

    def __init__(self) -> None:
        self.places: dict[str, str] = {}

    def add(self, place: str, text: str) -> None:
        self.places[place] = self.places.get(place, "") + text

    def assert_clean(self) -> None:
        found = {place: hits for place, text in self.places.items() if (hits := leaks(text))}
        assert not found, "secrets leaked:\n" + "\n".join(f"{p}: {h}" for p, hits in found.items() for h in hits)


# -- fixtures: a PostgreSQL role with a password, hostile servers, the environment --------------------


@pytest.fixture(scope="module")
def pg_with_password():
    """A role with a password owning a fresh database; yields the ledger URL (password inside)."""
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    role = f"ragline_secret_{uuid.uuid4().hex[:8]}"
    database = f"{role}_db"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{SECRETS['ledger database password']}'"))
            conn.execute(sa.text(f'CREATE DATABASE "{database}" OWNER "{role}"'))
    except Exception as exc:  # noqa: BLE001
        service_missing("PostgreSQL", exc)
    host = PG_ADMIN_URL.split("@", 1)[1].rsplit("/", 1)[0]
    yield {"url": f"postgresql+psycopg://{role}:{SECRETS['ledger database password']}@{host}/{database}",
           "bad_url": f"postgresql+psycopg://{role}:{SECRETS['ledger database password']}@{host}/{database}_missing",
           "admin_url": PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{database}"}
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        conn.execute(sa.text(f'DROP ROLE IF EXISTS "{role}"'))
    admin.dispose()


@pytest.fixture(scope="module")
def echo():
    with EchoServer(status=401) as server:
        yield server


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, echo, pg_with_password):
    """A folder to ingest, a sources file with a CRM and an S3 source (both pointed at the echo server),
    and the environment holding every secret."""
    root = tmp_path_factory.mktemp("secrets")
    folder = root / "handbook"
    write_corpus(folder, 3)
    config = root / "ragline.yaml"
    config.write_text(
        "sources:\n"
        f"  crm:\n    kind: hubspot\n    base_url: \"{echo.url}\"\n    token_env: LEAK_CRM_TOKEN\n    objects: [notes]\n"
        f"  contracts:\n    kind: s3\n    bucket: contracts\n    endpoint_url: \"{echo.url}\"\n    region: us-east-1\n"
        "    access_key_id_env: LEAK_S3_KEY\n    secret_access_key_env: LEAK_S3_SECRET\n"
    )
    redis = f"redis://:{SECRETS['Redis password']}@127.0.0.1:{closed_port()}/0"
    env = {
        "RAGLINE_API_KEYS": SECRETS["query API key"],
        "RAGLINE_LEDGER_URL": pg_with_password["url"],
        "LEAK_CRM_TOKEN": SECRETS["CRM token"],
        "LEAK_S3_KEY": SECRETS["S3 access key id"],
        "LEAK_S3_SECRET": SECRETS["S3 secret access key"],
        "RAGLINE_LLM_BASE_URL": f"{echo.url}/v1",
        "RAGLINE_LLM_MODEL": "leak-model",
        "RAGLINE_LLM_API_KEY": SECRETS["LLM API key"],
        "REDIS_URL": redis,
    }
    return {"root": root, "folder": folder, "config": config, "env": env, "data": root / "data"}


def run_ragline(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """`ragline ARGS` in its own process, as a scheduler runs it."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("RAGLINE_", "QDRANT_", "REDIS_"))}
    full_env.update(env)
    full_env["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-m", "ragline.cli", *args], env=full_env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def ledger_dump(url: str) -> str:
    """Every row of every table of the ledger database, as text."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            parts = []
            for table in sa.inspect(engine).get_table_names():
                rows = conn.execute(sa.text(f'SELECT * FROM "{table}"')).all()
                parts.append(f"== {table} ({len(rows)} rows)\n" + "\n".join(map(repr, rows)))
        return "\n".join(parts)
    finally:
        engine.dispose()


# -- the failing runs ---------------------------------------------------------------------------------


def test_failing_cli_runs_leak_no_secret(workspace, echo, pg_with_password, embedder, chunker, tmp_path):
    env, data, root = workspace["env"], workspace["data"], workspace["root"]
    evidence = Evidence()

    # 1. The CRM and S3 sources refused by a server that echoes credentials: exit 2, both reported.
    sources = run_ragline(["ingest", "--config", str(workspace["config"]), "--data-dir", str(data)], env, root)
    evidence.add("ingest crm+s3: stdout", sources.stdout)
    evidence.add("ingest crm+s3: stderr", sources.stderr)
    shown = " ".join(sources.stderr.split())
    assert sources.returncode == 2, sources.stderr
    assert "source 'crm': token rejected (401)" in shown and "source 'contracts':" in shown

    # 2. The embedding endpoint refusing its key (and echoing it): exit 3.
    embed_env = {**env, "RAGLINE_EMBED_BASE_URL": f"{echo.url}/v1", "RAGLINE_EMBED_MODEL": "leak-embed",
                 "RAGLINE_EMBED_DIM": "384", "RAGLINE_EMBED_API_KEY": SECRETS["embedding API key"],
                 "RAGLINE_EMBED_TOKENIZER": str(bundled_model_path())}
    embedding = run_ragline(["ingest", str(workspace["folder"]), "--data-dir", str(root / "embed-data"), "--json"],
                            embed_env, root)
    evidence.add("ingest via embedding endpoint: stdout", embedding.stdout)
    evidence.add("ingest via embedding endpoint: stderr", embedding.stderr)
    assert embedding.returncode in (2, 3), embedding.stdout + embedding.stderr
    assert "401" in json.loads(embedding.stdout)["error"]

    # 3. A Qdrant server (the echo server) refusing the API key: the run stops.
    qdrant_env = {**env, "QDRANT_URL": echo.url, "QDRANT_API_KEY": SECRETS["Qdrant API key"]}
    qdrant = run_ragline(["ingest", str(workspace["folder"]), "--data-dir", str(root / "qdrant-data")], qdrant_env, root)
    evidence.add("ingest into Qdrant server: stdout", qdrant.stdout)
    evidence.add("ingest into Qdrant server: stderr", qdrant.stderr)
    assert qdrant.returncode in (2, 3), qdrant.stderr

    # 4. A ledger URL naming a database that does not exist (password in the URL).
    bad_ledger = run_ragline(["status", "--data-dir", str(data)], {**env, "RAGLINE_LEDGER_URL": pg_with_password["bad_url"]}, root)
    evidence.add("status with a bad ledger URL: stdout", bad_ledger.stdout)
    evidence.add("status with a bad ledger URL: stderr", bad_ledger.stderr)
    shown = " ".join(bad_ledger.stderr.split())
    assert bad_ledger.returncode == 2, bad_ledger.stderr
    assert "cannot open the ledger database postgresql+psycopg://" in shown and "_missing" in shown, shown
    assert "does not exist" in shown and "Traceback" not in shown and len(bad_ledger.stderr) < 1000, shown

    # 5. `ragline ask` over an index, the LLM refusing its key, Redis (with a password) down.
    index_ledger, index_store = Ledger(pg_with_password["url"]), EdgeStore(path=Settings(data_dir=data).qdrant_path)
    try:
        connector = LocalFolderConnector(workspace["folder"], name="handbook", accept=parsers.is_supported)
        sync_source(connector, store=index_store, ledger=index_ledger, embedder=embedder, chunker=chunker)
    finally:
        index_store.close()
        index_ledger.close()
    ask = run_ragline(["ask", "What does the annual leave policy say?", "--data-dir", str(data), "--json"], env, root)
    evidence.add("ask: stdout", ask.stdout)
    evidence.add("ask: stderr", ask.stderr)
    assert ask.returncode == 0, ask.stderr
    body = json.loads(ask.stdout)
    assert body["extractive"] is True and body["warnings"], body  # the provider failed; the answer fell back
    evidence.add("ask: answer", json.dumps(body))

    # The servers really were sent the secrets: the runs above exercised them.
    sent = json.dumps(echo.requests)
    for name in ("CRM token", "S3 access key id", "embedding API key", "Qdrant API key", "LLM API key"):
        assert SECRETS[name] in sent, f"the {name} never reached the server: the test proves nothing for it"

    evidence.add("ledger tables", ledger_dump(pg_with_password["admin_url"]))
    evidence.assert_clean()


def test_logs_and_query_api_leak_no_secret(workspace, echo, pg_with_password, caplog, monkeypatch, embedder):
    """The same failures in this process, with every log record captured, and the query API refusing
    a wrong key and answering the right one; then the audit trail and all log records are searched.
    (`embedder` only loads the model's libraries before the app starts, as the rest of the session does.)"""
    from fastapi.testclient import TestClient

    from query.api import create_app
    from query.service import open_service

    env, data = workspace["env"], workspace["data"]
    monkeypatch.chdir(workspace["root"])
    caplog.set_level(logging.INFO)
    for package in ("ragline", "connectors", "stores", "query", "flows", "embedders", "chunkers"):
        caplog.set_level(logging.DEBUG, logger=package)
    evidence = Evidence()

    result = runner.invoke(app, ["ingest", "--config", str(workspace["config"]), "--data-dir", str(data), "--json"], env=env)
    assert result.exit_code == 2, result.output
    evidence.add("in-process ingest output", result.output)
    qdrant = runner.invoke(app, ["ingest", str(workspace["folder"]), "--data-dir", str(data / "q"), "--json"],
                           env={**env, "QDRANT_URL": echo.url, "QDRANT_API_KEY": SECRETS["Qdrant API key"]})
    assert qdrant.exit_code in (2, 3)
    evidence.add("in-process qdrant output", qdrant.output)

    settings = Settings(
        data_dir=data, ledger_url=pg_with_password["url"], api_keys=SecretStr(SECRETS["query API key"]),
        llm_base_url=f"{echo.url}/v1", llm_model="leak-model", llm_api_key=SecretStr(SECRETS["LLM API key"]),
        redis_url=SecretStr(env["REDIS_URL"]),
    )
    monkeypatch.setenv("RAGLINE_LLM_API_KEY", SECRETS["LLM API key"])
    with open_service(settings) as service, TestClient(create_app(service)) as client:
        question = {"query": "annual leave policy", "k": 3}
        for headers in ({}, {"Authorization": f"Bearer {SECRETS['wrong query API key sent by a client']}"},
                        {"Authorization": SECRETS["wrong query API key sent by a client"]}):
            refused = client.post("/v1/search", json=question, headers=headers)
            assert refused.status_code == 401
            evidence.add("API refusals", refused.text)
        good = {"Authorization": f"Bearer {SECRETS['query API key']}"}
        for route, body in (("/v1/search", question), ("/v1/ask", {"question": "What does the leave policy say?"})):
            answered = client.post(route, json=body, headers=good)
            assert answered.status_code == 200, answered.text
            evidence.add(f"API {route}", answered.text)
        for route in ("/readyz", "/healthz", "/metrics"):
            evidence.add(f"API {route}", client.get(route, headers=good).text)

    audit = sa.create_engine(pg_with_password["admin_url"])
    try:
        with audit.connect() as conn:
            entries = conn.execute(sa.text("SELECT * FROM audit_log")).all()
    finally:
        audit.dispose()
    assert len(entries) >= 2, "the answered requests were not audited"
    evidence.add("audit_log", "\n".join(map(repr, entries)))
    evidence.add("ledger tables", ledger_dump(pg_with_password["admin_url"]))
    evidence.add("log records", "\n".join(
        f"{r.name} {r.levelname} {r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in caplog.records))
    assert caplog.records, "nothing was logged: the log check proves nothing"
    evidence.assert_clean()


@pytest.mark.prefect
def test_prefect_flow_runs_leak_no_secret(workspace, echo, pg_with_password, prefect_harness, monkeypatch):
    """The sync flow over the CRM and S3 sources (both refused by the echo server, which echoes the
    credentials back), with the ledger's password in its URL. Each stopped source publishes an artifact
    saying why; then every artifact, log line and flow/task-run state the Prefect API holds is searched."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.logging.handlers import APILogWorker

    from flows.sync import sync

    for name, value in workspace["env"].items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(workspace["root"])
    state = sync(config=str(workspace["config"]), data_dir=str(workspace["root"] / "flow-data"), return_state=True)
    assert state.is_failed()
    with pytest.raises(RaglineError, match="2 of 2 sources stopped"):
        state.result()
    APILogWorker.drain_all(timeout=30)  # the flow's log lines reach the API in the background

    # This flow run's records only (the Prefect server is shared with other tests), all of them.
    run_id = state.state_details.flow_run_id
    this_run = FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
    evidence = Evidence()
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])), limit=200)
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])), limit=200)
        runs = client.read_flow_runs(flow_run_filter=this_run) + client.read_task_runs(flow_run_filter=this_run)
    assert len(logs) < 200 and len(artifacts) < 200 and len(runs) >= 3, "records were left out"
    evidence.add("flow and task runs", "\n".join(run.model_dump_json() for run in runs))
    evidence.add("artifacts", "\n".join(a.model_dump_json() for a in artifacts))
    evidence.add("flow logs", "\n".join(log.message for log in logs))

    for source, reason in (("crm", "token rejected (401)"), ("contracts", "refused the credentials (HTTP 401")):
        artifact = next((a for a in artifacts if a.key == f"ragline-sync-{source}"), None)
        assert artifact is not None and reason in str(artifact.data), f"{source}: {artifact}"
    assert any("crm: stopped" in log.message for log in logs), "the flow logged no failure: the log check proves nothing"
    sent = json.dumps(echo.requests)
    for name in ("CRM token", "S3 access key id"):
        assert SECRETS[name] in sent, f"the {name} never reached the server: the test proves nothing for it"
    evidence.assert_clean()


# -- the SQL connector binds values ---------------------------------------------------------------------

HOSTILE = [
    "1'; DROP TABLE orders; --",
    "x\" OR \"1\"=\"1",
    "'); DELETE FROM orders WHERE ('1'='1",
    "Robert'); DROP TABLE students;--",
    "%s %(id)s :id ? $1",
    "\\'; SELECT pg_sleep(5); --",
]


def sql_url(tmp_path: Path, backend: str) -> str:
    """A fresh SQLite file, or a fresh PostgreSQL database (dropped by `drop_sql_database`)."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'orders.db'}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"ragline_sqli_{uuid.uuid4().hex[:8]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001
        service_missing("PostgreSQL", exc)
    finally:
        admin.dispose()
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def drop_sql_database(url: str) -> None:
    if url.startswith("sqlite"):
        return
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
    admin.dispose()


ORDERS_START = datetime(2026, 1, 1, tzinfo=UTC)


def hostile_orders(url: str, body: Callable[[int, str], str], step: timedelta) -> tuple[sa.Engine, sa.Table]:
    """An `orders` table whose ids are the HOSTILE values, one row each, `step` apart from 2026-01-01."""
    engine = sa.create_engine(url)
    meta = sa.MetaData()
    orders = sa.Table("orders", meta, sa.Column("id", sa.Text, primary_key=True), sa.Column("body", sa.Text),
                      sa.Column("updated_at", sa.DateTime(timezone=True)))
    meta.create_all(engine)
    with engine.begin() as conn:
        conn.execute(orders.insert(), [{"id": v, "body": body(i, v), "updated_at": ORDERS_START + step * i}
                                       for i, v in enumerate(HOSTILE)])
    return engine, orders


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sql_connector_binds_hostile_values(tmp_path, backend):
    url = sql_url(tmp_path, backend)
    engine, orders = hostile_orders(url, lambda i, v: f"Order body {v}", timedelta(minutes=1))

    statements: list[tuple[str, object]] = []
    connector = SqlConnector("orders", url=url, table="orders", id_columns=["id"], text_template="{body}",
                             updated_at_column="updated_at")
    sa.event.listen(connector.engine, "before_cursor_execute",
                    lambda conn, cursor, statement, parameters, context, many: statements.append((statement, parameters)))
    try:
        listed = {ref.doc_id: ref for ref in connector.list()}
        assert set(listed) == {value.replace("%", "%25").replace("/", "%2F") for value in HOSTILE}
        for value in HOSTILE:  # each hostile id fetches its own row, and only it
            doc_id = value.replace("%", "%25").replace("/", "%2F")
            raw = connector.fetch(listed[doc_id])
            assert raw.data.decode() == f"Order body {value}"
        with pytest.raises(FetchError):  # an id that matches nothing, whatever its quotes
            connector.fetch(DocRef(source="orders", doc_id="nope' OR '1'='1", fingerprint="f", uri="u"))
        # Hostile cursors: a text cursor and a datetime one, as stored in the ledger.
        # A text cursor against a timestamp column is refused by PostgreSQL as a type error of the bound
        # parameter (a clean SourceError); SQLite compares it as text. Either way it is a value, not SQL.
        for cursor in (encode_cursor(HOSTILE[0]), encode_cursor(ORDERS_START)):
            try:
                changes = connector.list_changes(cursor)
                list(changes.changes)
                list(changes.present_ids or [])
            except SourceError as error:
                assert backend == "postgresql" and "operator does not exist" in error.reason, error.reason
    finally:
        connector.close()

    for statement, parameters in statements:
        for value in HOSTILE:
            assert value not in statement, f"a runtime value was formatted into SQL: {statement!r}"
    assert any(HOSTILE[0] in repr(parameters) for _, parameters in statements), "hostile ids were never bound"
    with engine.connect() as conn:  # the data is untouched
        assert sorted(conn.execute(sa.select(orders.c.id)).scalars()) == sorted(HOSTILE)
    engine.dispose()
    drop_sql_database(url)


def test_sql_connector_builds_no_sql_text_from_runtime_values():
    """Static check of connectors/sql.py: the only SQL text is `sa.text(self.query)` (trusted configuration,
    refused if it holds bind markers); no execute or text() call is given an f-string, a concatenation,
    a %-format or a .format(), and raw driver SQL (exec_driver_sql, cursor.execute) is never used."""
    source = (REPO / "connectors" / "sql.py").read_text(encoding="utf-8")
    tree = ast.parse(source)
    problems = []
    text_calls = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name in ("exec_driver_sql", "executescript", "executemany"):
            problems.append(f"line {node.lineno}: raw driver SQL via {name}")
        if name in ("text", "execute", "literal_column", "TextClause"):
            if name == "text":
                text_calls.append(ast.unparse(node))
            for arg in node.args:
                built = isinstance(arg, ast.JoinedStr) or (
                    isinstance(arg, ast.BinOp) and isinstance(arg.op, ast.Add | ast.Mod)) or (
                    isinstance(arg, ast.Call) and isinstance(arg.func, ast.Attribute) and arg.func.attr == "format")
                if built:
                    problems.append(f"line {node.lineno}: SQL built from values: {ast.unparse(node)}")
            if name == "literal_column" and not all(isinstance(a, ast.Constant) for a in node.args):
                problems.append(f"line {node.lineno}: literal_column of a runtime value: {ast.unparse(node)}")
    assert problems == []
    assert text_calls == ["sa.text(self.query)"], text_calls


@pytest.mark.parametrize("backend", [
    "sqlite",
    "postgresql",
])
def test_sql_window_backfill_with_hostile_ids_deletes_nothing(tmp_path, embedder, chunker, backend):
    """A windowed backfill over a table with hostile ids re-ingests only its window and drops no table."""
    url = sql_url(tmp_path, backend)
    engine, orders = hostile_orders(url, lambda i, v: f"Order {i} ships trail runners.", timedelta(days=1))
    ledger, store = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}"), EdgeStore(path=tmp_path / "qdrant")
    try:
        def run(**options):
            connector = SqlConnector("orders", url=url, table="orders", id_columns=["id"], text_template="{body}",
                                     updated_at_column="updated_at")
            try:
                return sync_source(connector, store=store, ledger=ledger, embedder=embedder, chunker=chunker,
                                   options=SyncOptions(**options))
            finally:
                connector.close()

        assert run().added == len(HOSTILE)
        cursor = ledger.cursor("orders")
        with engine.begin() as conn:
            conn.execute(orders.delete().where(orders.c.id == HOSTILE[0]))  # gone, but outside the window
        window = run(force=True, window=(ORDERS_START + timedelta(days=2), ORDERS_START + timedelta(days=4)))
        assert (window.listing, window.updated, window.deleted) == ("window", 2, 0)
        assert ledger.cursor("orders") == cursor
        assert store.count({"source": "orders"}) >= len(HOSTILE)
    finally:
        store.close()
        ledger.close()
    with engine.connect() as conn:
        assert sorted(conn.execute(sa.select(orders.c.id)).scalars()) == sorted(HOSTILE[1:])
    engine.dispose()
    drop_sql_database(url)
