"""The sources config file (`ragline.yaml`): named sources, validated at load, built into connectors.

    sources:
      handbook:  {kind: local, path: ./docs, include: ["**/*.pdf", "**/*.md"]}
      contracts: {kind: s3, bucket: legal, prefix: contracts/, endpoint_url: "http://127.0.0.1:9000"}
      orders:    {kind: sql, url_env: ORDERS_DB_URL, table: orders, id_column: id,
                  text_template: "{title}\\n\\n{body}", updated_at_column: updated_at}
      crm:       {kind: hubspot, base_url: "https://api.example.com", token_env: CRM_TOKEN}

Secrets never appear in the file: a source names the environment variable that holds each one
(`*_env` keys), read when the connector is built and held as SecretStr until handed to it.
Relative local paths are taken from the config file's folder, so a scheduled run from any
working directory reads the same folder.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from connectors.http import MAX_RESPONSE_BYTES
from ragline import parsers
from ragline.errors import ConfigError
from ragline.types import Connector

DEFAULT_CONFIG = Path("ragline.yaml")
MAX_BYTES = 200 * 1024 * 1024


class _Source(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LocalSource(_Source):
    kind: Literal["local"]
    path: Path
    include: list[str] = ["**/*"]
    exclude: list[str] = []
    max_file_bytes: int = Field(default=MAX_BYTES, ge=1)


class S3Source(_Source):
    kind: Literal["s3"]
    bucket: str = Field(min_length=3)
    prefix: str = ""
    include: list[str] = ["**/*"]
    exclude: list[str] = []
    endpoint_url: str | None = None
    region: str | None = None
    access_key_id_env: str | None = None
    secret_access_key_env: str | None = None
    max_object_bytes: int = Field(default=MAX_BYTES, ge=1)

    @model_validator(mode="after")
    def _keys_in_pairs(self) -> S3Source:
        if (self.access_key_id_env is None) != (self.secret_access_key_env is None):
            raise ValueError("give both access_key_id_env and secret_access_key_env, or neither (boto3's chain)")
        return self


class SqlSource(_Source):
    kind: Literal["sql"]
    url: str | None = Field(default=None, description="a URL without a password, e.g. sqlite:///orders.db")
    url_env: str | None = Field(default=None, description="environment variable holding the URL")
    table: str | None = None
    query: str | None = None
    id_column: str | None = None
    id_columns: list[str] | None = None
    text_template: str
    metadata_columns: list[str] = []
    updated_at_column: str | None = None
    soft_delete_column: str | None = None
    batch_size: int = Field(default=1000, ge=1)

    @model_validator(mode="after")
    def _one_of_each(self) -> SqlSource:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("give exactly one of url or url_env")
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of table or query")
        if (self.id_column is None) == (self.id_columns is None):
            raise ValueError("give exactly one of id_column or id_columns")
        return self

    @property
    def ids(self) -> list[str]:
        return self.id_columns or [self.id_column]  # type: ignore[list-item]


class HubSpotSource(_Source):
    kind: Literal["hubspot"]
    base_url: str
    token_env: str
    objects: list[str] = ["contacts", "companies", "deals", "tickets", "notes"]
    page_size: int = Field(default=100, ge=1, le=100)
    requests_per_second: float = Field(default=10.0, gt=0)
    timeout: float = Field(default=30.0, gt=0)
    max_response_bytes: int = Field(default=MAX_RESPONSE_BYTES, ge=1)


class RestSource(_Source):
    kind: Literal["rest"]
    base_url: str
    path: str
    token_env: str | None = None
    auth_header: str = "Authorization"
    auth_scheme: str | None = "Bearer"  # None: the header holds the bare key (e.g. X-Api-Key)
    records_path: str = "results"
    id_field: str = "id"
    updated_at_field: str | None = "updatedAt"  # None: fingerprint is a hash of the listed record
    next_cursor_path: str | None = "paging.next.after"
    cursor_param: str = "after"
    next_link_path: str | None = None
    detail_path: str | None = None
    detail_params: dict[str, str] | None = None
    detail_record_path: str = ""
    title_field: str | None = None
    text_fields: list[str] | None = None
    params: dict[str, str] = {}
    page_size_param: str | None = "limit"
    page_size: int = Field(default=100, ge=1)
    requests_per_second: float = Field(default=10.0, gt=0)
    timeout: float = Field(default=30.0, gt=0)
    max_response_bytes: int = Field(default=MAX_RESPONSE_BYTES, ge=1)


SourceConfig = Annotated[LocalSource | S3Source | SqlSource | HubSpotSource | RestSource, Field(discriminator="kind")]


class SourcesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sources: dict[str, SourceConfig] = {}
    query: dict[str, Any] | None = None  # the query service's section, validated by query/config.py


def _describe(error: dict[str, Any], raw: dict[str, Any]) -> str:
    loc = [str(part) for part in error["loc"]]
    if len(loc) >= 2 and loc[0] == "sources":
        name = loc[1]
        kind = (raw.get("sources") or {}).get(name, {}) if isinstance(raw.get("sources"), dict) else {}
        kind = kind.get("kind") if isinstance(kind, dict) else None
        rest = [p for p in loc[2:] if p != kind]
        where = f"source {name!r}" + (f" ({kind})" if kind else "")
        field = f" field {'.'.join(rest)!r}" if rest else ""
        return f"{where}{field}: {error['msg']}"
    return f"{'.'.join(loc) or 'file'}: {error['msg']}"


def read_config_file(path: Path) -> Any:
    """The parsed YAML of the config file (its `sources:` and `query:` sections are validated by their readers)."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None


def load_sources(path: str | Path) -> dict[str, SourceConfig]:
    """Read and validate a sources file; errors name the file, the source and the field."""
    path = Path(path)
    raw = read_config_file(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with a 'sources' key")
    try:
        config = SourcesFile.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(_describe(e, raw) for e in exc.errors())
        raise ConfigError(f"{path}: {problems}") from None
    base = path.resolve().parent
    for source in config.sources.values():
        if isinstance(source, LocalSource) and not source.path.is_absolute():
            source.path = base / source.path
    return config.sources


def secret_from_env(source: str, variable: str) -> SecretStr:
    value = os.environ.get(variable)
    if not value:
        raise ConfigError(f"source {source!r}: environment variable {variable} is not set")
    return SecretStr(value)


def build_connector(name: str, config: SourceConfig, *, accept: Callable[[str], bool] = parsers.is_supported) -> Connector:
    """The connector for one configured source. Secrets are read first (a missing one is a clear
    error before anything connects); client libraries load only for their kind."""
    if isinstance(config, LocalSource):
        from connectors.local import LocalFolderConnector

        return LocalFolderConnector(
            config.path, name=name, include=config.include, exclude=config.exclude,
            accept=accept, max_file_bytes=config.max_file_bytes,
        )
    if isinstance(config, S3Source):
        keys = {}
        if config.access_key_id_env and config.secret_access_key_env:
            keys = {
                "access_key_id": secret_from_env(name, config.access_key_id_env).get_secret_value(),
                "secret_access_key": secret_from_env(name, config.secret_access_key_env).get_secret_value(),
            }
        from connectors.s3 import S3Connector

        return S3Connector(
            name, bucket=config.bucket, prefix=config.prefix, include=config.include, exclude=config.exclude,
            endpoint_url=config.endpoint_url, region=config.region, max_object_bytes=config.max_object_bytes,
            accept=accept, **keys,
        )
    if isinstance(config, SqlSource):
        url = config.url or secret_from_env(name, config.url_env).get_secret_value()  # type: ignore[arg-type]
        from connectors.sql import SqlConnector

        return SqlConnector(
            name, url=url, table=config.table, query=config.query, id_columns=config.ids,
            text_template=config.text_template, metadata_columns=config.metadata_columns,
            updated_at_column=config.updated_at_column, soft_delete_column=config.soft_delete_column,
            batch_size=config.batch_size,
        )
    if isinstance(config, HubSpotSource):
        token = secret_from_env(name, config.token_env)
        from connectors.hubspot import HubSpotConnector

        return HubSpotConnector(
            name, base_url=config.base_url, token=token.get_secret_value(),
            objects=config.objects, page_size=config.page_size,
            requests_per_second=config.requests_per_second, timeout=config.timeout,
            max_response_bytes=config.max_response_bytes,
        )
    if isinstance(config, RestSource):
        token = secret_from_env(name, config.token_env).get_secret_value() if config.token_env else None
        from connectors.rest import RestConnector

        options = config.model_dump(exclude={"kind", "token_env"})
        return RestConnector(name, token=token, **options)
    raise ConfigError(f"source {name!r}: unknown kind")  # pragma: no cover - the union is exhaustive


def describe(config: SourceConfig) -> str:
    """Where a source reads from, without building it (no secrets, no connection)."""
    if isinstance(config, LocalSource):
        return str(config.path)
    if isinstance(config, S3Source):
        return f"s3://{config.bucket}/{config.prefix}" + (f" at {config.endpoint_url}" if config.endpoint_url else "")
    if isinstance(config, SqlSource):
        where = f"table {config.table}" if config.table else "query"
        url = config.url if config.url else f"${config.url_env}"
        return f"{where} in {url}"
    if isinstance(config, HubSpotSource):
        return f"{config.base_url} ({', '.join(config.objects)})"
    return f"{config.base_url}{config.path}"
