"""The HTTP API on the real stack: pipeline-built embedded Qdrant, the real MiniLM, SQLite ledger.

Auth, bounds and error paths, search with filters, extractive answers, metrics, readiness, audit.
Generation through providers is in test_ask_gateway.py; the Redis cache in test_api_cache.py.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from query.audit import AuditLog
from ragline.cli import app as cli
from tests.query.stack import KEY, Stack, auth, build_corpus

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def stack(tmp_path_factory, embedder, chunker):
    root = tmp_path_factory.mktemp("api")
    s = Stack(root / "data", build_corpus(root / "corpus"), embedder, chunker)
    yield s
    s.close()


@pytest.fixture
def client(stack):
    with stack.client() as c:
        yield c


# -- auth and bounds ------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-key"}, {"Authorization": f"Basic {KEY}"},
                                     {"Authorization": "Bearer "}])
def test_every_query_route_needs_a_valid_key(client, headers):
    for route, body in (("/v1/search", {"query": "annual leave"}), ("/v1/ask", {"question": "annual leave?"})):
        response = client.post(route, json=body, headers=headers)
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"] == "Bearer"
        assert "API key" in response.json()["error"]


def test_health_needs_no_key_and_metrics_does(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    assert ready.json()["checks"]["model"]["name"] == "all-MiniLM-L6-v2"
    for headers in ({}, {"Authorization": "Bearer wrong-key"}):
        assert client.get("/metrics", headers=headers).status_code == 401
    scraped = client.get("/metrics", headers=auth())
    assert scraped.status_code == 200 and "ragline_http_requests_total" in scraped.text
    assert {"/v1/search", "/v1/ask", "/metrics"} <= set(client.get("/openapi.json").json()["paths"])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"query": ""}, "query"),
        ({"query": "   "}, "query: must not be blank"),
        ({"query": "leave", "k": 0}, "k"),
        ({"query": "leave", "k": 51}, "k: 51 is over the limit of 50"),
        ({"query": "leave", "k": "ten"}, "k"),
        ({"query": "x" * 2001}, "over the limit of 2000"),
        ({"query": "leave", "filters": {"colour": "red"}}, "colour"),
        ({"query": "leave", "filters": {"modified_after": "yesterday-ish"}}, "modified_after"),
        ({"query": "leave", "unexpected": 1}, "unexpected"),
        ({"query": 42}, "query"),
    ],
)
def test_bad_input_is_a_422_naming_the_field(client, body, message):
    response = client.post("/v1/search", json=body, headers=auth())
    assert response.status_code == 422, response.text
    assert message in response.json()["error"]


def test_malformed_json_and_oversize_bodies(client):
    response = client.post("/v1/search", content=b"{not json", headers={**auth(), "Content-Type": "application/json"})
    assert response.status_code == 422
    huge = json.dumps({"query": "leave " * 20000})
    response = client.post("/v1/search", content=huge, headers={**auth(), "Content-Type": "application/json"})
    assert response.status_code == 413
    assert "65536 bytes" in response.json()["error"]


def test_rate_limit_per_key_answers_429_with_retry_after(stack):
    config = {"api_keys": [{"id": "slow", "key_env": "T_KEY", "requests_per_minute": 3},
                           {"id": "other", "key_env": "OTHER_KEY"}]}
    with stack.client(config, environ={"OTHER_KEY": "other-key-456"}) as c:
        codes = [c.post("/v1/search", json={"query": f"leave {i}"}, headers=auth()).status_code for i in range(4)]
        assert codes == [200, 200, 200, 429]
        limited = c.post("/v1/search", json={"query": "leave"}, headers=auth())
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["retry-after"]) <= 20  # one token per 20 s at 3/min
        assert "'slow'" in limited.json()["error"]
        # another key has its own budget
        assert c.post("/v1/search", json={"query": "leave"}, headers=auth("other-key-456")).status_code == 200


# -- search ---------------------------------------------------------------------------------------


def test_search_returns_chunks_with_their_sources(client):
    response = client.post("/v1/search", json={"query": "How many days of annual leave do employees get?", "k": 3},
                           headers=auth())
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["results"]) == 3
    top = body["results"][0]
    assert top["doc_id"] == "hr/employee-handbook.pdf"
    assert top["source"] == "sample" and top["uri"].endswith("employee-handbook.pdf")
    assert top["page_start"] >= 1 and "leave" in top["text"].lower()
    assert {"chunk_id", "score", "doc_type", "modified_at"} <= top.keys()
    assert body["cached"] is False and body["timings"]["retrieval_ms"] > 0


def test_search_filters_restrict_the_results(client):
    def doc_ids(filters):
        response = client.post("/v1/search", json={"query": "policy rules", "k": 20, "filters": filters}, headers=auth())
        assert response.status_code == 200, response.text
        return {r["doc_id"] for r in response.json()["results"]}

    assert doc_ids({"doc_type": "pdf"}) and all(d.endswith(".pdf") for d in doc_ids({"doc_type": "pdf"}))
    assert doc_ids({"path_prefix": "hr"}) and all(d.startswith("hr/") for d in doc_ids({"path_prefix": "hr/"}))
    assert doc_ids({"source": "nope"}) == set()
    assert doc_ids({"modified_after": "2100-01-01T00:00:00Z"}) == set()
    assert doc_ids({"modified_after": "2000-01-01T00:00:00Z"})  # files carry their modification time
    assert doc_ids({"where": {"page_start": {"gte": 2}}})
    assert doc_ids({"where": {"doc_id": "it/it-security-policy.md"}}) == {"it/it-security-policy.md"}


def test_scoped_key_never_sees_other_sources(stack, embedder, chunker, tmp_path):
    from tests.query.stack import ingest

    other = tmp_path / "other"
    other.mkdir()
    (other / "secret.md").write_text("# Board minutes\n\nThe annual leave budget for executives is secret.", encoding="utf-8")
    ingest(other, stack.store, stack.ledger, embedder, chunker, name="board")
    config = {"api_keys": [{"id": "hr-bot", "key_env": "T_KEY", "sources": ["sample"]},
                           {"id": "admin", "key_env": "ADMIN_KEY"}]}
    try:
        with stack.client(config, environ={"ADMIN_KEY": "admin-key-789"}) as c:
            question = {"query": "executives annual leave budget secret", "k": 50}
            admin = c.post("/v1/search", json=question, headers=auth("admin-key-789")).json()["results"]
            assert "board" in {r["source"] for r in admin}
            scoped = c.post("/v1/search", json=question, headers=auth()).json()["results"]
            assert scoped and {r["source"] for r in scoped} == {"sample"}
            # asking for the other source outright is refused, and so is sneaking it through `where`
            refused = c.post("/v1/search", json={**question, "filters": {"source": ["sample", "board"]}}, headers=auth())
            assert refused.status_code == 403 and "board" in refused.json()["error"]
            sneaky = c.post("/v1/search", json={**question, "filters": {"where": {"source": "board"}}}, headers=auth())
            assert sneaky.status_code == 200 and sneaky.json()["results"] == []
    finally:
        stack.store.delete_documents("board", ["secret.md"])
        stack.ledger.delete_documents("board", ["secret.md"])


# -- ask without a provider: extractive -----------------------------------------------------------


def test_ask_without_provider_answers_extractively_with_citations(client):
    response = client.post("/v1/ask", json={"question": "How many days of annual leave do employees get?"}, headers=auth())
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["extractive"] is True and body["model"] == "extractive"
    assert body["answer"].startswith("Extractive answer")
    assert "22" in body["answer"]  # the handbook's figure, quoted from the document
    assert body["citations"] and body["citations"][0]["doc_id"] == "hr/employee-handbook.pdf"
    returned = {s["chunk_id"] for s in body["sources"]}
    assert all(c["chunk_id"] in returned and c["supports"] for c in body["citations"])
    assert body["route"]["name"] == "extractive"
    assert body["usage"] == {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0, "cost": 0.0}


def test_ask_for_a_model_when_none_is_configured_is_a_422(client):
    response = client.post("/v1/ask", json={"question": "leave?", "model": "gpt-x"}, headers=auth())
    assert response.status_code == 422
    assert "no generation provider" in response.json()["error"]


def test_unanswerable_question_says_so(client):
    response = client.post("/v1/ask", json={"question": "What is the boiling point of liquid nitrogen on Neptune?"},
                           headers=auth())
    body = response.json()
    assert body["answer"] == "The indexed documents do not appear to answer this question." or body["citations"]


# -- metrics, cache, audit ------------------------------------------------------------------------


def test_in_process_cache_hits_and_metrics_count_them(client):
    question = {"query": "laptop disk encryption", "k": 4}
    first = client.post("/v1/search", json=question, headers=auth()).json()
    second = client.post("/v1/search", json={**question, "query": "  Laptop DISK encryption? "}, headers=auth()).json()
    assert first["cached"] is False and second["cached"] is True
    assert second["results"] == first["results"]
    metrics = client.get("/metrics", headers=auth()).text
    assert 'ragline_cache_requests_total{result="hit",route="search"} 1.0' in metrics
    assert 'ragline_http_requests_total{method="POST",route="/v1/search",status="200"} 2.0' in metrics
    assert "ragline_retrieval_seconds_count 1.0" in metrics


def test_store_failure_is_a_503_not_a_500(stack):
    with stack.client() as c:
        def broken(*_a, **_k):
            raise RuntimeError("disk gone")

        c.service.retrieve = broken
        response = c.post("/v1/search", json={"query": "anything new"}, headers=auth())
        assert response.status_code == 503
        assert "unavailable" in response.json()["error"] and "disk gone" not in response.text


def test_every_request_is_audited_and_tampering_is_detected(stack, tmp_path):
    with stack.client() as c:
        before = AuditLog(stack.ledger.engine).head()
        c.post("/v1/search", json={"query": "audit me please"}, headers=auth())
        c.post("/v1/ask", json={"question": "audit me too?"}, headers=auth())
        c.post("/v1/search", json={"query": "x", "k": 500}, headers=auth())  # 422: handled before the service
    log = AuditLog(stack.ledger.engine)
    seq, head = log.head()
    assert seq == (before[0] if before else 0) + 2
    with stack.ledger.engine.connect() as conn:
        rows = conn.execute(text("SELECT route, key_id, question_sha256, chunk_ids, status FROM audit_log ORDER BY seq DESC LIMIT 2")).all()
    assert [r.route for r in rows] == ["/v1/ask", "/v1/search"]
    assert all(r.key_id == "tests" and KEY not in str(tuple(r)) and "audit me" not in str(tuple(r)) for r in rows)
    assert json.loads(rows[1].chunk_ids)

    runner = CliRunner()
    data_dir = str(stack.data)
    ok = runner.invoke(cli, ["audit", "verify", "--data-dir", data_dir, "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["ok"] is True
    with stack.ledger.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET chunk_ids = '[]' WHERE seq = :s"), {"s": seq - 1})
    tampered = runner.invoke(cli, ["audit", "verify", "--data-dir", data_dir, "--json"])
    assert tampered.exit_code == 1
    assert any(str(seq - 1) in p for p in json.loads(tampered.stdout)["problems"])
