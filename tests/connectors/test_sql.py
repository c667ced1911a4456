"""The SQL connector against real SQLite, PostgreSQL and MariaDB databases.

PostgreSQL tests use a fresh database of this session (tests/conftest.py); MariaDB tests use
uniquely named tables in `test`, dropped after each test. An unreachable server skips its tests,
unless RAGLINE_REQUIRE_SERVICES=1, where it fails them.
"""

from __future__ import annotations

import json
import os
import time
import tracemalloc
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from connectors.sql import SqlConnector
from ragline import parsers
from ragline.errors import ConfigError, FetchError, SourceError
from tests.conftest import service_missing
from tests.connectors.contract import ConnectorContract, listing

MARIADB_URL = os.environ.get(
    "RAGLINE_TEST_MARIADB_URL",
    "mysql+pymysql://root@127.0.0.1:3306/test?charset=utf8mb4",
)
PASSWORD = "s3cr3t-pw"
TEMPLATE = "{title}\n\n{body}"
LONG_TEXT = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")


@pytest.fixture(scope="session")
def mariadb_engine():
    engine = sa.create_engine(MARIADB_URL)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any connection failure means the service is missing
        engine.dispose()
        service_missing("MariaDB", exc)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def postgres_engine(postgres_server_url):
    engine = sa.create_engine(postgres_server_url)
    yield engine
    engine.dispose()


class Backend:
    """One database: its URL, an engine for the test's own writes, and the tables it made."""

    def __init__(self, kind: str, url: str, engine: sa.Engine):
        self.kind = kind
        self.url = url
        self.engine = engine
        self.metadata = sa.MetaData()
        self.connectors: list[SqlConnector] = []
        self._tick = 0

    def name(self, prefix: str = "docs") -> str:
        return f"{prefix}_{uuid.uuid4().hex[:10]}"

    def docs_table(self, name: str | None = None) -> sa.Table:
        table = sa.Table(
            name or self.name(),
            self.metadata,
            sa.Column("id", sa.String(190), primary_key=True),
            sa.Column("title", sa.String(200), nullable=True),
            sa.Column("body", LONG_TEXT, nullable=True),
            sa.Column("updated_at", sa.DateTime, nullable=True),
            sa.Column("deleted", sa.Boolean, nullable=False, default=False),
            sa.Column("price", sa.Numeric(10, 2), nullable=True),
            mysql_charset="utf8mb4",
        )
        table.create(self.engine)
        return table

    def stamp(self) -> datetime:
        self._tick += 1  # whole seconds: MariaDB's DATETIME drops fractions
        return datetime(2026, 1, 1, 12, 0, 0) + timedelta(seconds=self._tick)

    def upsert(self, table: sa.Table, **row) -> None:
        row.setdefault("updated_at", self.stamp())
        row.setdefault("deleted", False)
        with self.engine.begin() as conn:
            conn.execute(table.delete().where(table.c.id == row["id"]))
            conn.execute(table.insert().values(**row))

    def connector(self, table: str | None = None, **kwargs) -> SqlConnector:
        kwargs.setdefault("id_columns", ["id"])
        kwargs.setdefault("text_template", TEMPLATE)
        connector = SqlConnector(
            kwargs.pop("name", "sqltest"),
            url=kwargs.pop("url", self.url),
            table=table,
            **kwargs,
        )
        self.connectors.append(connector)
        return connector

    def cleanup(self) -> None:
        for connector in self.connectors:
            connector.close()
        self.metadata.drop_all(self.engine)


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres), pytest.param("mariadb", marks=pytest.mark.mariadb)]
)
def backend(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'source.db'}"
        engine = sa.create_engine(url)
        db = Backend("sqlite", url, engine)
        yield db
        db.cleanup()
        engine.dispose()
        return
    if request.param == "postgresql":
        db = Backend(
            "postgresql",
            request.getfixturevalue("postgres_server_url"),
            request.getfixturevalue("postgres_engine"),
        )
    else:
        db = Backend("mariadb", MARIADB_URL, request.getfixturevalue("mariadb_engine"))
    yield db
    db.cleanup()


# --------------------------------------------------------------------------- the shared contract


class SqlSource:
    def __init__(self, backend: Backend, use_updated_at: bool):
        self.backend = backend
        self.table = backend.docs_table()
        self.use_updated_at = use_updated_at

    def put(self, key, text):
        self.backend.upsert(self.table, id=key, title=f"Title of {key}", body=text)

    def delete(self, key):
        with self.backend.engine.begin() as conn:
            conn.execute(self.table.delete().where(self.table.c.id == key))

    def connector(self):
        return self.backend.connector(
            self.table.name,
            updated_at_column="updated_at" if self.use_updated_at else None,
        )

    def doc_id(self, key):
        return key


class TestSqlContract(ConnectorContract):
    @pytest.fixture(params=["updated_at", "row_hash"])
    def source(self, request, backend):
        return SqlSource(backend, use_updated_at=request.param == "updated_at")


# --------------------------------------------------------------------------- configuration


def test_configuration_errors_are_caught_without_connecting():
    url = f"postgresql+psycopg://u:{PASSWORD}@127.0.0.1:1/nowhere"  # never contacted
    ok = {"url": url, "table": "docs", "id_columns": ["id"], "text_template": TEMPLATE}
    SqlConnector("s", **ok)
    cases = [
        (dict(ok, query="SELECT 1"), "exactly one of table or query"),
        (
            {k: v for k, v in ok.items() if k != "table"},
            "exactly one of table or query",
        ),
        (dict(ok, text_template="{} and {body}"), "must name a column"),
        (dict(ok, text_template="{0}"), "must name a column"),
        (dict(ok, text_template="{body.__class__}"), "attribute and index access"),
        (dict(ok, text_template="{body[0]}"), "attribute and index access"),
        (dict(ok, text_template="{body:{title}}"), "nested field"),
        (dict(ok, text_template="{body"), "not a valid format string"),
        (dict(ok, text_template="no fields"), "names no column"),
        (dict(ok, id_columns=[]), "at least one column"),
        (dict(ok, id_columns="id"), "list of column names"),
        (dict(ok, batch_size=0), "batch_size"),
        (dict(ok, url="not a url"), "not a valid SQLAlchemy database URL"),
        (dict(ok, url="nosuchdb://x/y"), "no SQLAlchemy dialect"),
        (
            {
                **{k: v for k, v in ok.items() if k != "table"},
                "query": "DELETE FROM docs",
            },
            "must be a SELECT",
        ),
        (
            {
                **{k: v for k, v in ok.items() if k != "table"},
                "query": "SELECT * FROM docs WHERE id = :x",
            },
            ":x",
        ),
    ]
    for kwargs, expected in cases:
        with pytest.raises(ConfigError, match=expected) as info:
            SqlConnector("s", **kwargs)
        assert PASSWORD not in str(info.value)


def test_location_hides_the_password():
    connector = SqlConnector(
        "s",
        url=f"postgresql+psycopg://u:{PASSWORD}@db:5432/app",
        table="docs",
        id_columns=["id"],
        text_template="{b}",
    )
    assert PASSWORD not in connector.location
    assert connector.location == "postgresql+psycopg://u:***@db:5432/app docs"
    query = SqlConnector(
        "s",
        url="sqlite:///x.db",
        query="SELECT 1 AS id, 'x' AS b",
        id_columns=["id"],
        text_template="{b}",
    )
    assert query.location.endswith(" query")


# --------------------------------------------------------------------------- rows and rendering


def test_nulls_render_as_empty_text_and_metadata_is_json_safe(backend):
    table = backend.docs_table()
    backend.upsert(
        table, id="n1", title=None, body="Only a body.", price=Decimal("19.99")
    )
    backend.upsert(table, id="n2", title="Only a title", body=None, price=None)
    connector = backend.connector(
        table.name, metadata_columns=["price", "updated_at", "title"]
    )
    refs = listing(connector)
    one = connector.fetch(refs["n1"])
    assert one.data == b"\n\nOnly a body."
    assert one.filename == "n1.txt"
    assert one.metadata["price"] == 19.99 and one.metadata["title"] is None
    # columns are read untyped: SQLite hands back DATETIME as the text it stored
    stamp = "2026-01-01 12:00:" if backend.kind == "sqlite" else "2026-01-01T12:00:"
    assert one.metadata["updated_at"].startswith(stamp)
    json.dumps(dict(one.metadata))
    two = connector.fetch(refs["n2"])
    assert two.data == b"Only a title\n\n" and two.metadata["price"] is None
    assert "Only a title" in parsers.parse(two.filename, two.data).text


def test_unicode_round_trips(backend):
    table = backend.docs_table()
    key = "注文-😀-שלום"
    text = "Zelt für 4 😀🏕️ — 帐篷可睡四人 — האוהל מתאים לארבעה אנשים — ﷽"
    backend.upsert(table, id=key, title="タイトル", body=text)
    connector = backend.connector(table.name)
    refs = listing(connector)
    assert set(refs) == {key}
    raw = connector.fetch(refs[key])
    assert raw.data.decode("utf-8") == f"タイトル\n\n{text}"
    assert raw.filename.endswith(".txt") and "/" not in raw.filename


@pytest.mark.parametrize("mode", ["updated_at", "row_hash"])
def test_updates_change_only_that_fingerprint_and_deletes_leave(backend, mode):
    table = backend.docs_table()
    for i in range(5):
        backend.upsert(table, id=f"k{i}", title=f"T{i}", body=f"body {i}")

    def make():
        return backend.connector(
            table.name, updated_at_column="updated_at" if mode == "updated_at" else None
        )

    before = {d: r.fingerprint for d, r in listing(make()).items()}
    backend.upsert(table, id="k3", title="T3", body="body 3, edited")
    with backend.engine.begin() as conn:
        conn.execute(table.delete().where(table.c.id == "k1"))
    after = {d: r.fingerprint for d, r in listing(make()).items()}
    assert set(after) == {"k0", "k2", "k3", "k4"}
    assert {d for d in after if after[d] != before[d]} == {"k3"}
    # a template change re-renders every row, whatever the fingerprint is built from
    changed_template = backend.connector(
        table.name,
        text_template="{body}",
        updated_at_column="updated_at" if mode == "updated_at" else None,
    )
    assert all(r.fingerprint != after[d] for d, r in listing(changed_template).items())


def test_soft_deleted_rows_leave_the_listing(backend):
    table = backend.docs_table()
    backend.upsert(table, id="live", title="Live", body="still here")
    backend.upsert(table, id="gone", title="Gone", body="soft-deleted", deleted=True)
    connector = backend.connector(
        table.name, soft_delete_column="deleted", updated_at_column="updated_at"
    )
    refs = listing(connector)
    assert set(refs) == {"live"}
    with backend.engine.begin() as conn:  # deleted between listing and fetch
        conn.execute(table.update().where(table.c.id == "live").values(deleted=True))
    with pytest.raises(FetchError, match="soft-deleted"):
        connector.fetch(refs["live"])
    assert listing(backend.connector(table.name, soft_delete_column="deleted")) == {}


def test_composite_ids_escape_slashes_and_percents(backend):
    table = sa.Table(
        backend.name("composite"),
        backend.metadata,
        sa.Column("tenant", sa.String(100), primary_key=True),
        sa.Column("num", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("body", sa.Text),
        mysql_charset="utf8mb4",
    )
    table.create(backend.engine)
    with backend.engine.begin() as conn:
        conn.execute(
            table.insert(),
            [
                {"tenant": "acme/eu", "num": 7, "body": "slash tenant"},
                {"tenant": "acme%2Feu", "num": 7, "body": "percent tenant"},
                {"tenant": "acme", "num": 7, "body": "plain tenant"},
                {"tenant": "acme", "num": 12, "body": "twelve"},
            ],
        )
    connector = backend.connector(
        table.name, id_columns=["tenant", "num"], text_template="{body}"
    )
    refs = listing(connector)
    assert set(refs) == {"acme%2Feu/7", "acme%252Feu/7", "acme/7", "acme/12"}
    assert connector.fetch(refs["acme%2Feu/7"]).data == b"slash tenant"
    assert connector.fetch(refs["acme%252Feu/7"]).data == b"percent tenant"
    assert (
        connector.fetch(refs["acme/12"]).data == b"twelve"
    )  # an integer id bound from its text


def test_a_query_source(backend):
    table = backend.docs_table()
    backend.upsert(table, id="a", title="Alpha", body="first", price=Decimal("5.00"))
    backend.upsert(table, id="b", title="Beta", body="second", price=Decimal("50.00"))
    backend.upsert(table, id="c", title="Gamma", body="third", price=None)
    query = sa.select(
        table.c.id, table.c.title, table.c.body, table.c.price, table.c.updated_at
    ).where(table.c.price > 1)
    sql = str(query.compile(backend.engine, compile_kwargs={"literal_binds": True}))
    connector = backend.connector(
        None,
        query=sql + " ;",
        text_template="{title}: {body} (costs {price})",
        metadata_columns=["price"],
        updated_at_column="updated_at",
    )
    assert connector.location.endswith(" query")
    refs = listing(connector)
    assert set(refs) == {"a", "b"}
    raw = connector.fetch(refs["b"])
    price = (
        "50" if backend.kind == "sqlite" else "50.00"
    )  # SQLite stores NUMERIC 50.00 as the integer 50
    assert raw.data == f"Beta: second (costs {price})".encode() and raw.metadata == {
        "price": 50
    }
    with backend.engine.begin() as conn:
        conn.execute(table.update().where(table.c.id == "a").values(price=0))
    with pytest.raises(FetchError, match="row disappeared after listing"):
        connector.fetch(refs["a"])


def test_non_unique_ids_fail_the_listing(backend):
    table = backend.docs_table()
    backend.upsert(table, id="a", title="A", body="x")
    backend.upsert(table, id="b", title="A", body="y")
    connector = backend.connector(
        None,
        query=f"SELECT title, body FROM {table.name}",
        id_columns=["title"],
        text_template="{body}",
    )
    with pytest.raises(SourceError, match="not unique"):
        list(connector.list())


def test_rows_with_a_null_id_are_skipped_and_reported(backend):
    table = backend.docs_table()
    backend.upsert(table, id="a", title="has a title", body="x")
    backend.upsert(table, id="b", title=None, body="y")
    connector = backend.connector(
        None,
        query=f"SELECT title, body FROM {table.name}",
        id_columns=["title"],
        text_template="{body}",
    )
    assert set(listing(connector)) == {"has a title"}
    assert connector.skipped == [("", "an id column is NULL")]
    connector.close()
    assert (
        connector.fetch(next(iter(connector.list()))).data == b"x"
    )  # a closed connector reconnects lazily


def test_a_row_without_text_is_a_fetch_error_naming_its_null_and_empty_columns(backend):
    table = backend.docs_table()
    backend.upsert(table, id="empty", title=None, body="")
    backend.upsert(table, id="nulls", title=None, body=None)
    backend.upsert(table, id="blank", title="  ", body="\n")
    connector = backend.connector(table.name, text_template="{title}{body}")
    refs = listing(connector)
    reasons = {}
    for doc_id in ("empty", "nulls", "blank"):
        with pytest.raises(FetchError) as info:
            connector.fetch(refs[doc_id])
        reasons[doc_id] = info.value.reason
    assert reasons == {
        "empty": "the row has no text to index (title is NULL; body is empty)",
        "nulls": "the row has no text to index (title, body are NULL)",
        "blank": "the row has no text to index (title, body are empty)",
    }


def test_a_10_mb_text_fetches_whole(backend):
    table = backend.docs_table()
    body = ("Das Zelt schläft vier. " * 460_000)[: 10 * 1024 * 1024]
    backend.upsert(table, id="big", title="Big", body=body)
    connector = backend.connector(table.name, text_template="{body}")
    ref = listing(connector)["big"]
    raw = connector.fetch(ref)
    assert raw.data == body.encode("utf-8") and len(raw.data) > 10 * 1024 * 1024


# --------------------------------------------------------------------------- hostile values and failures


def test_injection_in_values_round_trips_and_the_table_survives(backend):
    table = backend.docs_table()
    hostile = "x'; DROP TABLE docs; --"
    also = f'"); DROP TABLE {table.name}; --'
    backend.upsert(
        table,
        id=hostile,
        title='It\'s "quoted"',
        body="Robert'); DROP TABLE students;--",
    )
    backend.upsert(table, id=also, title="t", body="b")
    connector = backend.connector(table.name, updated_at_column="updated_at")
    refs = listing(connector)
    assert set(refs) == {hostile, also}
    raw = connector.fetch(refs[hostile])
    assert raw.data.decode() == "It's \"quoted\"\n\nRobert'); DROP TABLE students;--"
    assert connector.fetch(refs[also]).data == b"t\n\nb"
    with backend.engine.connect() as conn:
        assert (
            conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            == 2
        )


def test_hostile_identifiers_are_quoted_not_executed(backend):
    table = backend.docs_table()
    backend.upsert(table, id="a", title="A", body="x")
    evil = f"{table.name}; DROP TABLE {table.name}; --"
    with pytest.raises(SourceError, match="cannot list"):
        list(backend.connector(evil).list())
    with pytest.raises(SourceError, match="not in table"):
        list(
            backend.connector(
                table.name, text_template="{body}{id; DROP TABLE x}"
            ).list()
        )
    with backend.engine.connect() as conn:
        assert (
            conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            == 1
        )


def test_a_template_field_naming_a_missing_column_is_a_clear_error(backend):
    table = backend.docs_table()
    backend.upsert(table, id="a", title="A", body="x")
    connector = backend.connector(table.name, text_template="{title}\n\n{summary}")
    with pytest.raises(
        SourceError, match="'summary' named in the configuration are not in table"
    ):
        list(connector.list())


def test_a_missing_table_is_a_source_error(backend):
    with pytest.raises(SourceError, match="cannot list"):
        list(backend.connector(backend.name("missing")).list())


def test_fetch_of_a_vanished_row_is_a_fetch_error(backend):
    table = backend.docs_table()
    backend.upsert(table, id="a", title="A", body="x")
    connector = backend.connector(table.name)
    ref = listing(connector)["a"]
    with backend.engine.begin() as conn:
        conn.execute(table.delete())
    with pytest.raises(FetchError, match="row disappeared after listing"):
        connector.fetch(ref)


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1:1/test",
        f"mysql+pymysql://root:{PASSWORD}@127.0.0.1:1/test",
    ],
)
def test_an_unreachable_server_is_a_source_error_without_the_password(url):
    connector = SqlConnector(
        "down", url=url, table="docs", id_columns=["id"], text_template=TEMPLATE
    )
    try:
        with pytest.raises(SourceError) as info:
            list(connector.list())
    finally:
        connector.close()
    assert PASSWORD not in str(info.value) and PASSWORD not in repr(info.value)
    assert "***" in str(info.value) and info.value.source == "down"


@pytest.mark.mariadb
def test_a_wrong_password_is_a_source_error_without_the_password(mariadb_engine):
    url = MARIADB_URL.replace("root@", f"root:{PASSWORD}@")
    connector = SqlConnector(
        "denied", url=url, table="docs", id_columns=["id"], text_template=TEMPLATE
    )
    try:
        with pytest.raises(SourceError, match="(?i)access denied") as info:
            list(connector.list())
    finally:
        connector.close()
    assert PASSWORD not in str(info.value)


# --------------------------------------------------------------------------- scale


N_ROWS = 10_000


@pytest.fixture
def big_table(backend):
    table = backend.docs_table()
    filler = "The tent sleeps four and packs small. " * 27  # ~1 KB a row, ~10 MB in all
    stamp = datetime(2026, 1, 1, tzinfo=UTC).replace(tzinfo=None)
    rows = [
        {
            "id": f"r{i:06d}",
            "title": f"Row {i}",
            "body": f"{i} {filler}",
            "updated_at": stamp,
            "deleted": False,
        }
        for i in range(N_ROWS)
    ]
    started = time.perf_counter()
    with backend.engine.begin() as conn:
        conn.execute(table.insert(), rows)  # executemany (insertmanyvalues batches)
    print(
        f"\n[{backend.kind}] inserted {N_ROWS} rows in {time.perf_counter() - started:.2f}s"
    )
    return table


@pytest.mark.parametrize("mode", ["updated_at", "row_hash"])
def test_lists_10k_rows_streamed_with_flat_memory(backend, big_table, mode):
    connector = backend.connector(
        big_table.name, updated_at_column="updated_at" if mode == "updated_at" else None
    )
    seen_options = []

    def spy(conn, cursor, statement, parameters, context, executemany):
        seen_options.append((statement, dict(context.execution_options)))

    sa.event.listen(connector.engine, "before_cursor_execute", spy)
    list(connector.list())  # warm: connect, pool, compiled-statement cache

    # the measurement (no tracemalloc: it slows Python several times)
    started = time.perf_counter()
    count = sum(1 for _ in connector.list())
    seconds = time.perf_counter() - started
    assert count == N_ROWS
    print(
        f"\n[{backend.kind}] list ({mode}): {N_ROWS / seconds:,.0f} rows/s ({seconds:.2f}s for {N_ROWS})"
    )

    listing_statements = [(s, o) for s, o in seen_options if "ORDER BY" in s]
    assert listing_statements and all(
        o.get("stream_results") is True and o.get("yield_per") == connector.batch_size
        for _, o in listing_statements
    )

    tracemalloc.start()
    try:
        count, last = 0, ""
        for ref in connector.list():
            assert (
                ref.doc_id > last
            )  # complete, ordered, no repeats, without keeping the refs
            count, last = count + 1, ref.doc_id
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == N_ROWS
    table_bytes = N_ROWS * 1024
    print(
        f"[{backend.kind}] list ({mode}) peak traced memory {peak / 1e6:.2f} MB for a ~{table_bytes / 1e6:.0f} MB table"
    )
    assert peak < 5_000_000


def test_fetch_throughput_500_rows(backend, big_table):
    connector = backend.connector(
        big_table.name, updated_at_column="updated_at", metadata_columns=["updated_at"]
    )
    refs = []
    for ref in connector.list():
        if len(refs) < 500:
            refs.append(ref)
    connector.fetch(refs[0])  # warm
    started = time.perf_counter()
    sizes = [len(connector.fetch(ref).data) for ref in refs]
    seconds = time.perf_counter() - started
    assert len(sizes) == 500 and all(s > 1000 for s in sizes)
    print(
        f"\n[{backend.kind}] fetch: {500 / seconds:,.0f} rows/s ({seconds:.2f}s for 500)"
    )


def test_updated_at_stored_as_text_still_dates_each_row(tmp_path):
    """SQLite has no datetime type: the column comes back as the text it holds. Listing parses ISO
    stamps (naive ones as UTC, a date as its midnight) so backfill windows see the rows; text that is
    no date leaves the row undated and is still listed."""
    url = f"sqlite:///{tmp_path / 'notes.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, updated_at TEXT)"))
        conn.execute(sa.text("INSERT INTO notes VALUES (:id, 'x', :stamp)"), [
            {"id": 1, "stamp": "2026-03-01 10:00:00.000000"},
            {"id": 2, "stamp": "2026-03-01T10:00:00+02:00"},
            {"id": 3, "stamp": "2026-03-01"},
            {"id": 4, "stamp": "last tuesday"},
        ])
    engine.dispose()
    connector = SqlConnector("notes", url=url, table="notes", id_columns=["id"], text_template="{body}",
                             updated_at_column="updated_at")
    try:
        dated = {ref.doc_id: ref.modified_at for ref in connector.list()}
    finally:
        connector.close()
    assert dated == {
        "1": datetime(2026, 3, 1, 10, tzinfo=UTC),
        "2": datetime(2026, 3, 1, 8, tzinfo=UTC),
        "3": datetime(2026, 3, 1, tzinfo=UTC),
        "4": None,
    }
