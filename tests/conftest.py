"""Shared fixtures: the real model (loaded once per session) and ledger databases.

PostgreSQL tests skip when no server answers, unless RAGLINE_REQUIRE_SERVICES=1 (CI),
where a missing server fails them.
"""

from __future__ import annotations

import os
import uuid

import pytest

from ragline.offline import enforce_offline

enforce_offline()

PG_ADMIN_URL = os.environ.get("RAGLINE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def service_missing(what: str, error: Exception) -> None:
    message = f"{what} is not reachable: {error}"
    if os.environ.get("RAGLINE_REQUIRE_SERVICES") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def embedder():
    from embedders.sentence_transformer import SentenceTransformerEmbedder

    model = SentenceTransformerEmbedder()
    model.embed(["warm up"])  # load once for the whole session
    return model


@pytest.fixture(scope="session")
def chunker(embedder):
    from chunkers.token_chunker import TokenChunker

    return TokenChunker(embedder)


@pytest.fixture(scope="session")
def postgres_server_url():
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    from sqlalchemy import create_engine, text

    name = f"ragline_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - any connection failure means the service is missing
        service_missing("PostgreSQL", exc)
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def ledger_url(request, tmp_path):
    """A ledger URL per backend; PostgreSQL ones get a schema-free fresh database per test."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    base = request.getfixturevalue("postgres_server_url")
    from sqlalchemy import create_engine, text

    engine = create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:  # each test starts from empty tables
        conn.execute(text("DROP TABLE IF EXISTS documents, runs, listing, sources, source_cursors, audit_log"))
    engine.dispose()
    return base


REDIS_TEST_URL = os.environ.get("RAGLINE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def redis_url():
    """The Redis server's test database (15), emptied before each test."""
    import redis

    client = redis.Redis.from_url(REDIS_TEST_URL, socket_timeout=2)
    try:
        client.flushdb()
    except Exception as exc:  # noqa: BLE001 - any connection failure means the service is missing
        service_missing("Redis", exc)
    finally:
        client.close()
    return REDIS_TEST_URL


@pytest.fixture(scope="module")
def moto_endpoint():
    """moto's real S3 HTTP server on a free loopback port, one per test module."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def prefect_harness():
    """One Prefect test harness (a local API server) for the whole session, started by the first test
    that asks for it: the flow tests and the secrets check of what flows publish."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
