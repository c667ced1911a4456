"""The query service's configuration: the config file's `query:` section, or the environment alone.

    query:
      providers:                       # OpenAI-compatible chat-completions endpoints, in fallback order
        - {name: small, base_url: "http://127.0.0.1:8001/v1", model: qwen2.5-3b, external: false}
        - {name: large, base_url: "https://llm.example.com/v1", model: gpt-4.1, api_key_env: LLM_KEY,
           cost_per_1k_input_tokens: 0.002, cost_per_1k_output_tokens: 0.008}
      routing: {small: [small, large], large: [large, small], max_simple_question_words: 20}
      api_keys:                        # keys are stored hashed: sha256 hex of the key, or an env var holding it
        - {id: intranet, sha256: "9f86d0...", requests_per_minute: 120}
        - {id: hr-bot, key_env: HR_BOT_KEY, sources: [handbook]}   # scoped: sees only these sources
      redaction: {restore_in_answer: true, extra_patterns: {EMPLOYEE_ID: "EMP-\\\\d{6}"}}
      limits: {max_k: 50, max_question_chars: 2000, max_body_bytes: 65536}

Without a `query:` section, a simple deployment is configured by environment alone:
RAGLINE_API_KEYS (comma-separated keys) and one provider from RAGLINE_LLM_BASE_URL, RAGLINE_LLM_MODEL,
RAGLINE_LLM_API_KEY and RAGLINE_LLM_EXTERNAL. Both sources add up: environment keys and provider
come after those of the file. No provider at all: answers are extractive (query/answer.py).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from query.gateway import ProviderConfig, RoutingConfig
from ragline.config import Settings
from ragline.errors import ConfigError
from ragline.sources import DEFAULT_CONFIG, read_config_file

ENV_PROVIDER_NAME = "env"
ENV_PROVIDER_KEY_VARIABLE = "RAGLINE_LLM_API_KEY"


def key_digest(key: str) -> str:
    """How an API key is stored and compared: its sha256, hex. The key itself is never kept."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ApiKeyConfig(_Strict):
    id: str = Field(min_length=1, max_length=64, description="names the key in logs, metrics and the audit trail")
    sha256: str | None = Field(default=None, description="sha256 hex digest of the key")
    key_env: str | None = Field(default=None, description="environment variable holding the key itself")
    sources: list[str] | None = Field(default=None, description="sources this key may read; None: all")
    requests_per_minute: int | None = Field(default=None, ge=1)

    @field_validator("sha256")
    @classmethod
    def _hex_digest(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[0-9a-f]{64}", value.lower()):
            raise ValueError("must be the 64-character hex sha256 of the key (e.g. `printf %s KEY | sha256sum`)")
        return value.lower() if value else value

    @model_validator(mode="after")
    def _one_way_to_give_the_key(self) -> ApiKeyConfig:
        if (self.sha256 is None) == (self.key_env is None):
            raise ValueError(f"api key {self.id!r}: give exactly one of sha256 or key_env")
        return self


class RedactionConfig(_Strict):
    enabled: bool = True  # applies to calls to providers marked external only
    restore_in_answer: bool = True  # put the caller's own values back into the answer shown to them
    extra_patterns: dict[str, str] = {}
    phone_regions: list[str] = ["US", "GB", "DE", "FR"]


class LimitsConfig(_Strict):
    default_k: int = Field(default=5, ge=1)
    max_k: int = Field(default=50, ge=1, le=1000)
    max_question_chars: int = Field(default=2000, ge=1)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    requests_per_minute: int = Field(default=600, ge=1, description="per API key, unless the key sets its own")


class QueryConfig(_Strict):
    providers: list[ProviderConfig] = []
    routing: RoutingConfig | None = None
    api_keys: list[ApiKeyConfig] = []
    redaction: RedactionConfig = RedactionConfig()
    limits: LimitsConfig = LimitsConfig()
    injection_screen: bool = True
    cache_ttl_seconds: int | None = Field(default=None, ge=0, description="overrides RAGLINE_CACHE_TTL_SECONDS")

    @model_validator(mode="after")
    def _unique_names(self) -> QueryConfig:
        for what, names in (("provider", [p.name for p in self.providers]), ("api key", [k.id for k in self.api_keys])):
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise ValueError(f"{what} names must be unique: {', '.join(duplicates)} given twice")
        return self


def load_query_config(settings: Settings, config_path: Path | None = None) -> QueryConfig:
    """The file's `query:` section (if a file is given or ./ragline.yaml exists) plus the environment's."""
    raw: dict[str, Any] = {}
    path = config_path or (DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None)
    if path is not None:
        document = read_config_file(Path(path))
        raw = (document.get("query") if isinstance(document, dict) else None) or {}
    try:
        config = QueryConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"query.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{path}: {problems}") from None
    return with_environment(config, settings)


def with_environment(config: QueryConfig, settings: Settings) -> QueryConfig:
    """Add the keys of RAGLINE_API_KEYS and the provider of RAGLINE_LLM_* to `config`."""
    keys = list(config.api_keys)
    if settings.api_keys is not None:
        for key in (k.strip() for k in settings.api_keys.get_secret_value().split(",")):
            if key:
                digest = key_digest(key)
                keys.append(ApiKeyConfig(id=f"key-{digest[:8]}", sha256=digest))
    providers = list(config.providers)
    if settings.llm_base_url:
        if not settings.llm_model:
            raise ConfigError("RAGLINE_LLM_BASE_URL is set but RAGLINE_LLM_MODEL is not: name the model to call")
        providers.append(
            ProviderConfig(
                name=ENV_PROVIDER_NAME,
                base_url=settings.llm_base_url,
                model=settings.llm_model,
                api_key_env=ENV_PROVIDER_KEY_VARIABLE if settings.llm_api_key is not None else None,
                external=settings.llm_external,
            )
        )
    return config.model_copy(update={"api_keys": keys, "providers": providers})


def resolve_key_digests(config: QueryConfig, environ: dict[str, str]) -> dict[str, ApiKeyConfig]:
    """sha256 digest -> key config, reading `key_env` keys from the environment now."""
    digests: dict[str, ApiKeyConfig] = {}
    for key in config.api_keys:
        if key.sha256 is not None:
            digest = key.sha256
        else:
            value = environ.get(key.key_env or "")
            if not value:
                raise ConfigError(f"api key {key.id!r}: environment variable {key.key_env} is not set")
            digest = key_digest(value)
        digests[digest] = key
    return digests
