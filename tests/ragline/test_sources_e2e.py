"""Each connector kind end to end through `ragline ingest --config ... --source NAME`:
dry-run plan, ingest, an edit, a delete, nothing duplicated. Real services, real model."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from ragline.cli import app
from ragline.components import build_store
from ragline.config import Settings

pytestmark = pytest.mark.model
runner = CliRunner()


def ingest(config, data, *extra, env=None):
    result = runner.invoke(app, ["ingest", "--config", str(config), "--data-dir", str(data), "--json", *extra], env=env)
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)


def doc_ids_in_store(data, source):
    store = build_store(Settings(data_dir=data))
    try:
        ids = [p["doc_id"] for _, p in store.iter_points({"source": source})]
    finally:
        store.close()
    return ids


NOW = datetime(2026, 1, 1, tzinfo=UTC)


def orders_source(tmp_path, url, monkeypatch, *, soft_delete: bool = False):
    """A PostgreSQL table of five orders and a config file naming it; returns (engine, table, config)."""
    engine = sa.create_engine(url)
    meta = sa.MetaData()
    orders = sa.Table(
        f"orders_{tmp_path.name[-8:].replace('-', '_')}", meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("title", sa.Text), sa.Column("body", sa.Text),
        sa.Column("status", sa.Text), sa.Column("updated_at", sa.DateTime(timezone=True)),
        sa.Column("is_deleted", sa.Boolean, server_default=sa.false()),
    )
    meta.create_all(engine)
    with engine.begin() as conn:
        conn.execute(orders.insert(), [
            {"id": i, "title": f"Order {i}", "body": f"Order {i} contains {i} pairs of trail runners.",
             "status": "open", "updated_at": NOW}
            for i in range(1, 6)
        ])
    monkeypatch.setenv("ORDERS_DB_URL", url)
    config = tmp_path / "ragline.yaml"
    config.write_text(
        "sources:\n  orders:\n    kind: sql\n    url_env: ORDERS_DB_URL\n"
        f"    table: {orders.name}\n    id_column: id\n    text_template: \"{{title}}\\n\\n{{body}}\"\n"
        "    metadata_columns: [status]\n    updated_at_column: updated_at\n"
        + ("    soft_delete_column: is_deleted\n" if soft_delete else "")
    )
    return engine, orders, config


@pytest.mark.postgres
def test_sql_source_end_to_end(tmp_path, postgres_server_url, monkeypatch):
    engine, orders, config = orders_source(tmp_path, postgres_server_url, monkeypatch)
    now = NOW
    data = tmp_path / "data"

    plan = ingest(config, data, "--source", "orders", "--dry-run")["runs"][0]["plan"]
    assert (plan["add"], plan["update"], plan["delete"]) == (5, 0, 0)
    assert doc_ids_in_store(data, "orders") == []

    first = ingest(config, data, "--source", "orders")["runs"][0]
    assert (first["added"], first["failed"]) == (5, 0)

    with engine.begin() as conn:
        conn.execute(orders.update().where(orders.c.id == 2).values(
            body="Order 2 was changed to one tent.", updated_at=now + timedelta(hours=1)))
        conn.execute(orders.delete().where(orders.c.id == 5))
    plan = ingest(config, data, "--source", "orders", "--dry-run")["runs"][0]["plan"]
    assert (plan["add"], plan["update"], plan["unchanged"], plan["delete"]) == (0, 1, 3, 1)
    second = ingest(config, data, "--source", "orders")["runs"][0]
    assert (second["updated"], second["unchanged"], second["deleted"]) == (1, 3, 1)
    ids = doc_ids_in_store(data, "orders")
    assert sorted(ids) == ["1", "2", "3", "4"]  # one chunk each, none duplicated

    found = json.loads(runner.invoke(app, ["search", "one tent", "-k", "1", "--filter", "source=orders",
                                           "--data-dir", str(data), "--json"]).stdout)
    assert found["hits"][0]["doc_id"] == "2"
    assert found["hits"][0]["text"].startswith("Order 2")
    engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("soft_delete", [False, True], ids=["hard-delete", "soft-delete"])
def test_sql_cursor_lists_only_changes(tmp_path, postgres_server_url, monkeypatch, soft_delete):
    engine, orders, config = orders_source(tmp_path, postgres_server_url, monkeypatch, soft_delete=soft_delete)
    data = tmp_path / "data"
    first = ingest(config, data)["runs"][0]
    assert (first["listing"], first["added"], first["cursor"]) == ("complete", 5, '{"datetime": "2026-01-01T00:00:00+00:00"}')

    with engine.begin() as conn:
        conn.execute(orders.update().where(orders.c.id == 2).values(body="Order 2 became a canoe.",
                                                                     updated_at=NOW + timedelta(hours=1)))
        # committed late: its updated_at is older than the stored cursor, but inside the overlap window
        conn.execute(orders.insert().values(id=9, title="Order 9", body="A late order of stoves.",
                                            status="open", updated_at=NOW - timedelta(minutes=2)))
        if soft_delete:
            conn.execute(orders.update().where(orders.c.id == 4).values(is_deleted=True,
                                                                         updated_at=NOW + timedelta(hours=1)))
        else:
            conn.execute(orders.delete().where(orders.c.id == 4))
    second = ingest(config, data)["runs"][0]
    assert second["listing"] == "changes"
    assert (second["added"], second["updated"], second["deleted"], second["unchanged"]) == (1, 1, 1, 3)
    assert sorted(doc_ids_in_store(data, "orders"), key=int) == ["1", "2", "3", "5", "9"]
    assert second["cursor"] == '{"datetime": "2026-01-01T01:00:00+00:00"}'
    full = ingest(config, data, "--full-listing")["runs"][0]
    assert (full["listing"], full["unchanged"], full["chunks_embedded"]) == ("complete", 5, 0)
    status = json.loads(runner.invoke(app, ["status", "--data-dir", str(data), "--json"]).stdout)
    assert status["sources"][0]["cursor"] == second["cursor"]
    engine.dispose()


def test_s3_source_end_to_end(tmp_path, moto_endpoint, monkeypatch):
    import boto3

    monkeypatch.setenv("TEST_S3_KEY", "testing")
    monkeypatch.setenv("TEST_S3_SECRET", "testing")
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    bucket = f"legal-{tmp_path.name[-6:].lower().replace('_', '-')}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="contracts/a/supply.md", Body=b"# Supply\n\nDeliveries are due within 14 days.")
    s3.put_object(Bucket=bucket, Key="contracts/b/lease.txt", Body=b"The store lease runs until 2031.")
    s3.put_object(Bucket=bucket, Key="contracts/broken.pdf", Body=b"%PDF-1.4 garbage")
    s3.put_object(Bucket=bucket, Key="other/ignored.txt", Body=b"outside the prefix")
    config = tmp_path / "ragline.yaml"
    config.write_text(
        f"sources:\n  contracts:\n    kind: s3\n    bucket: {bucket}\n    prefix: contracts/\n"
        f"    endpoint_url: \"{moto_endpoint}\"\n    region: us-east-1\n"
        "    access_key_id_env: TEST_S3_KEY\n    secret_access_key_env: TEST_S3_SECRET\n"
    )
    data = tmp_path / "data"

    plan = ingest(config, data, "--source", "contracts", "--dry-run")["runs"][0]["plan"]
    assert (plan["add"], plan["delete"]) == (3, 0)
    first = ingest(config, data, "--source", "contracts")["runs"][0]
    assert (first["added"], first["failed"]) == (2, 1)
    assert first["failures"][0]["doc_id"] == "broken.pdf"

    s3.put_object(Bucket=bucket, Key="contracts/b/lease.txt", Body=b"The store lease was extended until 2035.")
    s3.delete_object(Bucket=bucket, Key="contracts/a/supply.md")
    second = ingest(config, data, "--source", "contracts")["runs"][0]
    assert (second["updated"], second["deleted"], second["failed"]) == (1, 1, 0)
    assert doc_ids_in_store(data, "contracts") == ["b/lease.txt"]


def test_crm_source_end_to_end(tmp_path, monkeypatch):
    from tests.support.crm_server import CrmServer

    with CrmServer(token="e2e-crm-token") as crm:
        deal = crm.add("deals", {"dealname": "Rental fleet renewal", "amount": "42000", "dealstage": "contractsent"})
        note = crm.add("notes", {"hs_note_body": "Customer asked for twelve inflatable kayaks by May."})
        contact = crm.add("contacts", {"firstname": "Ines", "lastname": "Ortega", "email": "ines@example.com"})
        monkeypatch.setenv("E2E_CRM_TOKEN", "e2e-crm-token")
        config = tmp_path / "ragline.yaml"
        config.write_text(
            f"sources:\n  crm:\n    kind: hubspot\n    base_url: \"{crm.url}\"\n    token_env: E2E_CRM_TOKEN\n"
            "    objects: [contacts, deals, notes]\n    requests_per_second: 50\n"
        )
        data = tmp_path / "data"
        plan = ingest(config, data, "--source", "crm", "--dry-run")["runs"][0]["plan"]
        assert (plan["add"], plan["delete"]) == (3, 0)
        first = ingest(config, data, "--source", "crm")["runs"][0]
        assert (first["added"], first["failed"]) == (3, 0)

        crm.update("notes", note, hs_note_body="Customer now wants twenty kayaks by June.")
        crm.archive("contacts", contact)
        second = ingest(config, data, "--source", "crm")["runs"][0]
        assert (second["updated"], second["deleted"], second["unchanged"]) == (1, 1, 1)
        assert sorted(doc_ids_in_store(data, "crm")) == sorted([f"deals/{deal}", f"notes/{note}"])
        found = json.loads(runner.invoke(app, ["search", "how many kayaks", "-k", "1", "--filter", "source=crm",
                                               "--data-dir", str(data), "--json"]).stdout)
        assert "twenty kayaks" in found["hits"][0]["text"]
        status = runner.invoke(app, ["status", "--data-dir", str(data), "--json"])
        assert "e2e-crm-token" not in status.stdout
