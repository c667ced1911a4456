"""Mass deletion and scope: a listing that suddenly shows a tenth of a source (files gone from a share,
a wrong S3 prefix, an expired CRM token, a CRM that archived most records) deletes nothing and says
why; a windowed backfill never deletes, whatever vanished. Real model, Edge store, moto, the CRM server.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
from typer.testing import CliRunner

from connectors.hubspot import HubSpotConnector
from connectors.s3 import S3Connector
from ragline import parsers
from ragline.cli import app
from ragline.config import Settings
from ragline.errors import ConfigError, MassDeleteRefused
from ragline.ledger import Ledger
from ragline.pipeline import SyncOptions, sync_source
from stores.edge import EdgeStore
from tests.support.crm_server import CrmServer
from tests.support.outages import assert_complete, document_text, points_by_doc, write_corpus

pytestmark = pytest.mark.model
runner = CliRunner()

DOCS = 20
KEPT = 2  # a tenth of the source still listed


def cli_json(*args: str, env: dict[str, str] | None = None) -> tuple[int, dict]:
    result = runner.invoke(app, [*args, "--json"], env=env)
    return result.exit_code, json.loads(result.stdout)


def open_index(data: Path) -> tuple[Ledger, EdgeStore]:
    settings = Settings(data_dir=data)
    return Ledger(settings.resolved_ledger_url), EdgeStore(path=settings.qdrant_path)


def snapshot(store, ledger, source: str) -> tuple[dict, dict]:
    """The index of one source as it stands: points (id -> payload) per document, ledger rows."""
    rows = {d.doc_id: (d.fingerprint, d.version, d.status, d.chunk_count) for d in ledger.documents(source)}
    return points_by_doc(store, source), rows


# -- a local folder losing 90% of its files -------------------------------------------------------


def test_a_folder_that_lost_90_percent_is_refused_through_the_cli_and_nothing_is_deleted(tmp_path):
    folder = tmp_path / "share"
    names = write_corpus(folder, DOCS)
    data = tmp_path / "data"
    code, first = cli_json("ingest", str(folder), "--data-dir", str(data))
    assert code == 0 and first["runs"][0]["added"] == DOCS
    ledger, store = open_index(data)
    try:
        before = snapshot(store, ledger, "share")
    finally:
        store.close()
        ledger.close()

    for name in names[KEPT:]:  # the share came back half-mounted: a tenth of the files is visible
        (folder / name).unlink()
    code, refused = cli_json("ingest", str(folder), "--data-dir", str(data))
    assert code == 2
    [message] = refused["refused"]
    assert f"would delete {DOCS - KEPT} of its {DOCS} indexed documents" in message
    assert "'share'" in message and "nothing was changed" in message and "--allow-mass-delete" in message
    assert refused["runs"] == [] and refused["ok"] is False

    ledger, store = open_index(data)
    try:
        assert snapshot(store, ledger, "share") == before, "a refused run changed the index or the ledger"
        assert ledger.last_run("share")["status"] == "refused"
    finally:
        store.close()
        ledger.close()

    human = runner.invoke(app, ["ingest", str(folder), "--data-dir", str(data)])
    assert human.exit_code == 2 and "refused:" in human.output  # the human output refuses the same way

    code, allowed = cli_json("ingest", str(folder), "--data-dir", str(data), "--allow-mass-delete")
    assert code == 0 and allowed["runs"][0]["deleted"] == DOCS - KEPT
    ledger, store = open_index(data)
    try:
        assert_complete(store, ledger, "share", set(names[:KEPT]))
    finally:
        store.close()
        ledger.close()


def test_the_share_can_be_set_through_the_environment(tmp_path):
    """RAGLINE_MAX_DELETE_SHARE=0.95 lets a 90% deletion through; the default refuses it."""
    folder = tmp_path / "share"
    names = write_corpus(folder, DOCS)
    data = tmp_path / "data"
    assert cli_json("ingest", str(folder), "--data-dir", str(data))[0] == 0
    for name in names[KEPT:]:
        (folder / name).unlink()
    code, result = cli_json("ingest", str(folder), "--data-dir", str(data), env={"RAGLINE_MAX_DELETE_SHARE": "0.95"})
    assert code == 0 and result["runs"][0]["deleted"] == DOCS - KEPT
    code, bad = cli_json("ingest", str(folder), "--data-dir", str(data), env={"RAGLINE_MAX_DELETE_SHARE": "1.5"})
    assert code == 2 and "max_delete_share" in bad["error"]


# -- S3 with a wrong prefix ----------------------------------------------------------------------


def test_s3_listing_under_a_wrong_prefix_deletes_nothing(tmp_path, moto_endpoint, embedder, chunker):
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    bucket = f"scope-{tmp_path.name[-8:].lower().replace('_', '-')}"
    s3.create_bucket(Bucket=bucket)
    for i in range(DOCS):
        folder = "2026" if i < KEPT else "2025"
        s3.put_object(Bucket=bucket, Key=f"contracts/{folder}/c{i:02d}.md", Body=document_text(i).encode())

    def connector(prefix: str) -> S3Connector:
        return S3Connector("contracts", bucket=bucket, prefix=prefix, endpoint_url=moto_endpoint, region="us-east-1",
                           access_key_id="testing", secret_access_key="testing", accept=parsers.is_supported)

    ledger, store = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}"), EdgeStore(path=tmp_path / "qdrant")
    try:
        def run(prefix: str, **options):
            return sync_source(connector(prefix), store=store, ledger=ledger, embedder=embedder, chunker=chunker,
                               options=SyncOptions(**options))

        assert run("contracts/").added == DOCS
        before = snapshot(store, ledger, "contracts")
        # A wrong prefix on the source: the name is bound to its location, so the run is refused up front.
        for wrong in ("contracts/2026/", "contract/", "Contracts/"):
            with pytest.raises(ConfigError, match=rf"already bound to s3 s3://{bucket}/contracts/ .*s3://{bucket}/{wrong} "):
                run(wrong)
            assert snapshot(store, ledger, "contracts") == before, f"prefix {wrong!r} changed the index"
        # The right prefix, but 90% of the objects were moved elsewhere (a reorganised bucket).
        for i in range(KEPT, DOCS):
            key = f"contracts/2025/c{i:02d}.md"
            s3.copy_object(Bucket=bucket, Key=f"archive/{key}", CopySource={"Bucket": bucket, "Key": key})
            s3.delete_object(Bucket=bucket, Key=key)
        with pytest.raises(MassDeleteRefused, match=rf"would delete {DOCS - KEPT} of its {DOCS} indexed documents"):
            run("contracts/")
        assert snapshot(store, ledger, "contracts") == before
        for i in range(KEPT, DOCS):  # moved back: nothing to do
            key = f"contracts/2025/c{i:02d}.md"
            s3.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": f"archive/{key}"})
        report = run("contracts/")
        assert (report.unchanged + report.updated, report.deleted, report.added) == (DOCS, 0, 0)
    finally:
        store.close()
        ledger.close()


# -- the CRM: an expired token, and most records archived at once -----------------------------------

CRM_TOKEN = "pat-scope-valid-token"


def test_crm_with_an_expired_token_fails_clearly_through_the_cli_and_deletes_nothing(tmp_path):
    with CrmServer(token=CRM_TOKEN) as crm:
        for i in range(DOCS):
            crm.add("notes", {"hs_note_body": document_text(i)})
        config = tmp_path / "ragline.yaml"
        config.write_text(f"sources:\n  crm:\n    kind: hubspot\n    base_url: \"{crm.url}\"\n    token_env: SCOPE_CRM_TOKEN\n"
                          "    objects: [notes]\n    requests_per_second: 100\n")
        data = tmp_path / "data"
        base = ["ingest", "--config", str(config), "--data-dir", str(data)]
        code, first = cli_json(*base, env={"SCOPE_CRM_TOKEN": CRM_TOKEN})
        assert code == 0 and first["runs"][0]["added"] == DOCS
        ledger, store = open_index(data)
        try:
            before, cursor = snapshot(store, ledger, "crm"), ledger.cursor("crm")
        finally:
            store.close()
            ledger.close()

        code, expired = cli_json(*base, env={"SCOPE_CRM_TOKEN": "pat-scope-EXPIRED-token"})
        assert code == 2
        [message] = expired["source_errors"]
        assert message.startswith("source 'crm':") and "token rejected (401)" in message
        assert "EXPIRED" not in json.dumps(expired)
        human = runner.invoke(app, base, env={"SCOPE_CRM_TOKEN": "pat-scope-EXPIRED-token"})
        shown = " ".join(human.output.split())  # rich wraps long lines
        assert human.exit_code == 2 and "nothing deleted" in shown and "token rejected (401)" in shown

        ledger, store = open_index(data)
        try:
            assert snapshot(store, ledger, "crm") == before and ledger.cursor("crm") == cursor
        finally:
            store.close()
            ledger.close()


def test_crm_archiving_90_percent_at_once_is_refused_and_keeps_the_cursor(tmp_path, embedder, chunker):
    """The incremental listing reports archived records as deletions: 90% of them at once is refused,
    the cursor stays, and the same deletions are seen again (and applied) once allowed."""
    with CrmServer(token=CRM_TOKEN) as crm:
        ids = [crm.add("notes", {"hs_note_body": document_text(i)}) for i in range(DOCS)]
        ledger, store = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}"), EdgeStore(path=tmp_path / "qdrant")

        def run(**options):
            connector = HubSpotConnector("crm", base_url=crm.url, token=CRM_TOKEN, objects=["notes"],
                                         requests_per_second=0, clock=crm.now)
            try:
                return sync_source(connector, store=store, ledger=ledger, embedder=embedder, chunker=chunker,
                                   options=SyncOptions(**options))
            finally:
                connector.close()

        try:
            assert run().added == DOCS
            cursor = ledger.cursor("crm")
            before = snapshot(store, ledger, "crm")
            for record in ids[KEPT:]:
                crm.archive("notes", record)
            with pytest.raises(MassDeleteRefused, match=f"would delete {DOCS - KEPT} of its {DOCS}"):
                run()
            assert ledger.cursor("crm") == cursor, "a refused run moved the cursor"
            assert snapshot(store, ledger, "crm") == before
            allowed = run(allow_mass_delete=True)
            assert (allowed.listing, allowed.deleted) == ("changes", DOCS - KEPT)
            assert_complete(store, ledger, "crm", {f"notes/{i}" for i in ids[:KEPT]})
        finally:
            store.close()
            ledger.close()


# -- a windowed backfill ----------------------------------------------------------------------------

JAN, FEB, MAR = (datetime(2026, m, 15, tzinfo=UTC) for m in (1, 2, 3))


def test_a_windowed_backfill_never_deletes_even_what_vanished(tmp_path):
    folder = tmp_path / "archive"
    names = write_corpus(folder, 6)
    months = dict(zip(names, (JAN, JAN, FEB, FEB, MAR, MAR), strict=True))
    for name, when in months.items():
        os.utime(folder / name, (when.timestamp(), when.timestamp()))
    data = tmp_path / "data"
    assert cli_json("ingest", str(folder), "--data-dir", str(data))[0] == 0

    # One January and one February file vanish; one January and one February file change.
    (folder / names[0]).unlink()
    (folder / names[2]).unlink()
    for name in (names[1], names[3]):
        (folder / name).write_text(document_text(40) + " Edited.", encoding="utf-8")
        os.utime(folder / name, (months[name].timestamp(), months[name].timestamp()))

    code, result = cli_json("backfill", "--source", "archive", "--since", "2026-02-01", "--until", "2026-03-01",
                            "--data-dir", str(data))
    assert code == 0, result
    [report] = result["runs"]
    assert (report["listing"], report["deleted"], report["updated"]) == ("window", 0, 1)
    ledger, store = open_index(data)
    try:
        points = points_by_doc(store, "archive")
        assert set(points) == set(names), "a windowed backfill deleted documents"
        texts = {d: " ".join(p["text"] for p in pts.values()) for d, pts in points.items()}
        assert "Edited." in texts[names[3]]  # in the window: re-ingested
        assert "Edited." not in texts[names[1]]  # January: outside the window, left alone
        assert ledger.cursor("archive") is None
    finally:
        store.close()
        ledger.close()

    code, dry = cli_json("backfill", "--source", "archive", "--since", "2026-01-01", "--data-dir", str(data), "--dry-run")
    assert code == 0 and dry["runs"][0]["plan"]["delete"] == 0

    # A full sync afterwards applies the deletions: the backfill only postponed them.
    code, full = cli_json("ingest", str(folder), "--data-dir", str(data))
    assert code == 0 and (full["runs"][0]["deleted"], full["runs"][0]["updated"]) == (2, 1)
