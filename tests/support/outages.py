"""Shared by the hardening tests: corpora, real services brought down and back, and the checks that an
index is consistent (nothing half-written counted as indexed) and complete (every document, exactly)."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from ragline.ledger import DocumentRecord, Ledger
from stores.base import VectorStore
from stores.qdrant import point_id

TOPICS = ("annual leave", "travel expenses", "laptop encryption", "parental leave", "office hours", "fire drills",
          "expense reports", "remote work", "badge access", "code review", "incident response", "data retention")


def document_text(i: int) -> str:
    topic = TOPICS[i % len(TOPICS)]
    return f"# Policy {i}: {topic}\n\n" + " ".join(
        f"Rule {i}.{n}: the {topic} policy number {i} says item {n} applies to every team." for n in range(12)
    )


def write_corpus(folder: Path, count: int, *, start: int = 0) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(start, start + count):
        name = f"policy-{i:03d}.md"
        (folder / name).write_text(document_text(i), encoding="utf-8")
        names.append(name)
    return names


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def points_by_doc(store: VectorStore, source: str) -> dict[str, dict[str, dict]]:
    out: dict[str, dict[str, dict]] = {}
    for pid, payload in store.iter_points({"source": source}):
        out.setdefault(payload["doc_id"], {})[str(pid)] = payload
    return out


def assert_consistent(store: VectorStore, ledger: Ledger, source: str) -> dict[str, DocumentRecord]:
    """Nothing half-written is reported as indexed: every document the ledger calls indexed has
    exactly its chunks in the store, at the version the ledger records. Returns the ledger's rows."""
    docs = {d.doc_id: d for d in ledger.documents(source)}
    points = points_by_doc(store, source)
    for doc in docs.values():
        if doc.status != "indexed":
            continue
        expected = {str(point_id(source, doc.doc_id, i)) for i in range(doc.chunk_count)}
        found = points.get(doc.doc_id, {})
        assert set(found) == expected, f"{doc.doc_id}: indexed in the ledger, but its points are not all there"
        versions = {p["doc_version"] for p in found.values()}
        assert versions == {doc.version}, f"{doc.doc_id}: points of version {versions}, ledger says {doc.version}"
    return docs


def assert_complete(store: VectorStore, ledger: Ledger, source: str, doc_ids: set[str]) -> None:
    """The index holds exactly `doc_ids`, each indexed, each with all its chunks and nothing else."""
    docs = assert_consistent(store, ledger, source)
    assert set(docs) == doc_ids, f"ledger: missing {doc_ids - set(docs)}, extra {set(docs) - doc_ids}"
    assert {d for d, doc in docs.items() if doc.status != "indexed"} == set(), "documents left failed or pending"
    assert set(points_by_doc(store, source)) == doc_ids, "the store holds other documents than the source"


class PostgresDatabase:
    """A fresh PostgreSQL database for one test, with the means to cut it off and bring it back."""

    def __init__(self, admin_url: str):
        self.admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        self.name = f"ragline_outage_{uuid.uuid4().hex[:10]}"
        with self.admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{self.name}"'))
        self.url = admin_url.rsplit("/", 1)[0] + f"/{self.name}"

    def drop_connections(self) -> int:
        """Terminate every session on the database (what a failover or a restarted server does)."""
        with self.admin.connect() as conn:
            killed = conn.execute(
                sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :db"),
                {"db": self.name},
            ).all()
        return sum(1 for (ok,) in killed if ok)

    def go_down(self) -> None:
        """No new connections, and every open one dropped: the database is gone until `come_back`."""
        with self.admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS false'))
        self.drop_connections()

    def come_back(self) -> None:
        with self.admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true'))

    def drop(self) -> None:
        self.come_back()
        with self.admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self.admin.dispose()


@contextmanager
def postgres_database(admin_url: str) -> Iterator[PostgresDatabase]:
    database = PostgresDatabase(admin_url)
    try:
        yield database
    finally:
        database.drop()


class AfterDocuments:
    """A pipeline Progress that calls `action` once, when the `after`-th document is done."""

    def __init__(self, after: int, action):
        self.after, self.action = after, action
        self.done = 0
        self.fired = False

    def planned(self, source: str, total: int) -> None:
        pass

    def advance(self, doc_id: str, action: str) -> None:
        self.done += 1
        if self.done == self.after and not self.fired:
            self.fired = True
            self.action()
