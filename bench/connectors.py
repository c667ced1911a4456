"""Listing and fetch throughput of each connector against the real services that run here.

    python bench/connectors.py [--objects 1050] [--rows 10000] [--records 2200]

S3: moto's HTTP server on loopback. SQL: SQLite, and PostgreSQL / MariaDB when they answer.
CRM: the local HubSpot-shaped server of the test suite, without and with 20% of calls
answering 429 (Retry-After 1 s). Prints one JSON object; each figure is per second.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from datetime import datetime
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

FETCH_SAMPLE = 200


def rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds else 0.0


def measure(connector, fetch_sample: int = FETCH_SAMPLE) -> dict:
    start = time.perf_counter()
    refs = list(connector.list())
    list_s = time.perf_counter() - start
    sample = refs[:fetch_sample]
    start = time.perf_counter()
    for ref in sample:
        connector.fetch(ref)
    fetch_s = time.perf_counter() - start
    return {"listed": len(refs), "list_per_s": rate(len(refs), list_s),
            "fetched": len(sample), "fetch_per_s": rate(len(sample), fetch_s)}


def bench_s3(objects: int) -> dict:
    import boto3
    from moto.server import ThreadedMotoServer

    from connectors.s3 import S3Connector

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        creds = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench"}
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **creds)
        s3.create_bucket(Bucket="bench")
        for i in range(objects):
            s3.put_object(Bucket="bench", Key=f"docs/{i % 10}/doc-{i:05d}.txt", Body=f"Document {i}. " * 50)
        connector = S3Connector("bench", bucket="bench", prefix="docs/", endpoint_url=endpoint,
                                region="us-east-1", access_key_id="bench", secret_access_key="bench")
        return measure(connector)
    finally:
        server.stop()


def bench_sql(rows: int, urls: dict[str, str]) -> dict:
    import sqlalchemy as sa

    from connectors.sql import SqlConnector

    results = {}
    for backend, url in urls.items():
        try:
            engine = sa.create_engine(url)
            table = f"bench_{uuid.uuid4().hex[:8]}"
            meta = sa.MetaData()
            docs = sa.Table(table, meta, sa.Column("id", sa.Integer, primary_key=True), sa.Column("title", sa.String(200)),
                            sa.Column("body", sa.Text), sa.Column("updated_at", sa.DateTime))
            meta.create_all(engine)
        except Exception as exc:  # noqa: BLE001 - a server that is not running is reported, not fatal
            results[backend] = {"skipped": str(exc).splitlines()[0]}
            continue
        try:
            with engine.begin() as conn:
                conn.execute(docs.insert(), [{"id": i, "title": f"Row {i}", "body": "x" * 1000,  # ids from 1: MariaDB
                                              "updated_at": datetime(2026, 1, 1)} for i in range(1, rows + 1)])
            for mode, updated in (("updated_at", "updated_at"), ("row_hash", None)):
                connector = SqlConnector("bench", url=url, table=table, id_columns=["id"],
                                         text_template="{title}\n\n{body}", updated_at_column=updated)
                results[f"{backend} ({mode})"] = measure(connector)
                connector.close()
        finally:
            meta.drop_all(engine)
            engine.dispose()
    return results


def bench_crm(records: int) -> dict:
    from connectors.hubspot import HubSpotConnector
    from tests.support.crm_server import CrmServer

    results = {}
    per_type = records // 5
    for label, setup in (("no faults", lambda crm: None), ("20% 429, Retry-After 1 s", lambda crm: crm.rate_limit(0.2, "1"))):
        with CrmServer(token="bench") as crm:
            for object_type in ("contacts", "companies", "deals", "tickets", "notes"):
                crm.add_many(object_type, per_type)
            setup(crm)
            connector = HubSpotConnector("bench", base_url=crm.url, token="bench", requests_per_second=10.0)
            results[f"{label}, 10 req/s budget"] = measure(connector, fetch_sample=50)
            results[f"{label}, 10 req/s budget"]["requests"] = len(crm.requests)
            connector.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=1050)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--records", type=int, default=2200)
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--mariadb", default="mysql+pymysql://root@127.0.0.1:3306/test")
    args = parser.parse_args()
    sqlite = f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    steps: dict[str, Callable[[], dict]] = {
        "s3 (moto server)": lambda: bench_s3(args.objects),
        "sql": lambda: bench_sql(args.rows, {"sqlite": sqlite, "postgresql": args.postgres, "mariadb": args.mariadb}),
        "crm (local HubSpot-shaped server)": lambda: bench_crm(args.records),
    }
    print(json.dumps({name: step() for name, step in steps.items()}, indent=2))


if __name__ == "__main__":
    main()
