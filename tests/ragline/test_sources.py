"""The sources config file: validation with errors that name the source and field, secrets from env."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragline.cli import app
from ragline.errors import ConfigError
from ragline.sources import HubSpotSource, LocalSource, S3Source, SqlSource, build_connector, describe, load_sources

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ragline.yaml"
runner = CliRunner()


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "ragline.yaml"
    path.write_text(text)
    return path


def test_the_example_file_covers_every_kind_and_validates():
    sources = load_sources(EXAMPLE)
    assert {cfg.kind for cfg in sources.values()} == {"local", "s3", "sql", "hubspot", "rest"}
    handbook = sources["handbook"]
    assert isinstance(handbook, LocalSource) and handbook.path == (EXAMPLE.parent / "../samples/corpus")
    assert isinstance(sources["orders"], SqlSource) and sources["orders"].ids == ["id"]
    assert describe(sources["contracts"]) == "s3://legal/contracts/ at http://127.0.0.1:9000"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sources:\n  orders: {kind: sql, url_env: X, table: t, id_column: id}\n", "source 'orders' (sql) field 'text_template': Field required"),
        ("sources:\n  orders: {kind: sql, url_env: X, url: y, table: t, id_column: id, text_template: x}\n", "source 'orders' (sql): Value error, give exactly one of url or url_env"),
        ("sources:\n  docs: {kind: ftp, path: x}\n", "source 'docs'"),
        ("sources:\n  docs: {kind: local, path: x, colour: blue}\n", "source 'docs' (local) field 'colour': Extra inputs are not permitted"),
        ("sources:\n  s3: {kind: s3, bucket: bkt, access_key_id_env: K}\n", "give both access_key_id_env and secret_access_key_env"),
        ("sources: [1, 2\n", "not valid YAML"),
        ("- just a list\n", "expected a mapping"),
    ],
)
def test_errors_name_the_source_and_field(tmp_path, text, message):
    with pytest.raises(ConfigError) as info:
        load_sources(write(tmp_path, text))
    assert message in str(info.value) and str(tmp_path) in str(info.value)


def test_secrets_come_from_the_environment_and_are_never_shown(tmp_path, monkeypatch):
    path = write(tmp_path, "sources:\n  crm: {kind: hubspot, base_url: 'http://127.0.0.1:9', token_env: CRM_TOKEN}\n")
    crm = load_sources(path)["crm"]
    assert isinstance(crm, HubSpotSource)
    with pytest.raises(ConfigError, match="environment variable CRM_TOKEN is not set"):
        build_connector("crm", crm)
    monkeypatch.setenv("CRM_TOKEN", "tok-do-not-print-4711")
    listed = runner.invoke(app, ["sources", "list", "--config", str(path), "--json"])
    assert listed.exit_code == 0 and "tok-do-not-print-4711" not in listed.output
    assert json.loads(listed.stdout)["sources"] == [
        {"name": "crm", "kind": "hubspot", "location": "http://127.0.0.1:9 (contacts, companies, deals, tickets, notes)"}
    ]


def test_s3_keys_pair_check_and_missing_file(tmp_path):
    assert isinstance(load_sources(write(tmp_path, "sources:\n  b: {kind: s3, bucket: bkt}\n"))["b"], S3Source)
    with pytest.raises(ConfigError, match="does not exist"):
        load_sources(tmp_path / "nope.yaml")


@pytest.mark.model
def test_ingest_and_check_configured_sources(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# Boots\n\nWaterproof boots are re-proofed every season.")
    (docs / "b.txt").write_text("Tents are aired out after every rental.")
    path = write(tmp_path, "sources:\n  handbook: {kind: local, path: docs, include: ['**/*.md']}\n")
    data = str(tmp_path / "data")

    check = runner.invoke(app, ["sources", "check", "handbook", "--config", str(path), "--json"])
    assert check.exit_code == 0
    checked = json.loads(check.stdout)
    assert checked["ok"] and checked["seen"] == 1 and checked["sample"][0]["doc_id"] == "a.md"

    dry = runner.invoke(app, ["ingest", "--config", str(path), "--source", "handbook", "--dry-run", "--data-dir", data])
    assert dry.exit_code == 0 and "would add 1" in dry.stdout

    done = runner.invoke(app, ["ingest", "--config", str(path), "--data-dir", data, "--json"])
    [report] = json.loads(done.stdout)["runs"]
    assert (report["source"], report["added"]) == ("handbook", 1)

    missing = runner.invoke(app, ["sources", "check", "nope", "--config", str(path), "--json"])
    assert missing.exit_code == 2 and "no source named 'nope'" in json.loads(missing.stdout)["error"]


def test_every_kind_builds_its_connector_from_the_example(monkeypatch):
    for variable in ("CONTRACTS_S3_KEY_ID", "CONTRACTS_S3_SECRET", "CRM_TOKEN", "HELPDESK_TOKEN"):
        monkeypatch.setenv(variable, f"value-of-{variable}")
    monkeypatch.setenv("ORDERS_DB_URL", "postgresql+psycopg://reader:pw-4711@127.0.0.1:1/shop")
    built = {name: build_connector(name, cfg) for name, cfg in load_sources(EXAMPLE).items()}
    assert {c.kind for c in built.values()} == {"local", "s3", "sql", "hubspot", "rest"}
    for connector in built.values():
        assert connector.name in built
        assert "pw-4711" not in connector.location and "value-of-" not in connector.location
        getattr(connector, "close", lambda: None)()


def test_api_answer_size_limit_is_a_source_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("CRM_TOKEN", "t")
    path = write(tmp_path, "sources:\n"
                 "  crm: {kind: hubspot, base_url: 'http://127.0.0.1:9', token_env: CRM_TOKEN, max_response_bytes: 4096}\n"
                 "  api: {kind: rest, base_url: 'http://127.0.0.1:9', path: /items}\n")
    sources = load_sources(path)
    crm, api = build_connector("crm", sources["crm"]), build_connector("api", sources["api"])
    try:
        assert crm.http.max_response_bytes == 4096
        assert api.http.max_response_bytes == 64 * 1024 * 1024  # the default
    finally:
        crm.close()
        api.close()
    with pytest.raises(ConfigError, match="max_response_bytes"):
        load_sources(write(tmp_path, "sources:\n  api: {kind: rest, base_url: 'http://x', path: /i, max_response_bytes: 0}\n"))
