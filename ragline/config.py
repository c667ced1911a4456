"""Settings, validated at load; environment variables (RAGLINE_*) override defaults.

Secrets (the Qdrant API key) are held as SecretStr so they never print.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_CHUNK_TOKENS = 250
DEFAULT_OVERLAP_TOKENS = 38  # ~15% of the chunk


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAGLINE_", extra="ignore")

    data_dir: Path = Field(default=Path(".ragline"), description="where the embedded store and ledger live")
    qdrant_url: str | None = Field(
        default=None, validation_alias=AliasChoices("QDRANT_URL", "RAGLINE_QDRANT_URL")
    )
    qdrant_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("QDRANT_API_KEY", "RAGLINE_QDRANT_API_KEY")
    )
    ledger_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite in data_dir")
    collection: str = "ragline"
    embedded_engine: Literal["edge", "local"] = Field(
        default="edge",
        description="without QDRANT_URL: Qdrant Edge in this process (edge), or qdrant-client's local mode (local)",
    )

    model_path: Path | None = Field(default=None, description="sentence-transformers model dir; default bundled MiniLM")
    model_window: int = Field(default=256, ge=16, description="model input window in tokens, special tokens included")
    embed_batch_size: int = Field(default=32, ge=1)
    embed_backend: Literal["torch", "bf16"] = Field(
        default="torch",
        description="local model: fp32 (torch) or bfloat16 autocast (bf16; about 2x on CPUs with native bf16). "
        "The collection records it as part of the model name: switching is a reindex",
    )

    chunk_tokens: int = Field(default=DEFAULT_CHUNK_TOKENS, ge=16)
    overlap_tokens: int = Field(default=DEFAULT_OVERLAP_TOKENS, ge=0)  # bounds checked by the chunker
    anchored_chunks: bool = Field(
        default=True, description="content-defined chunk boundaries, so an edit re-embeds only the chunks around it"
    )

    flush_chunks: int = Field(default=256, ge=1, description="chunks embedded and upserted per batch")
    max_delete_share: float = Field(default=0.5, gt=0, le=1)
    max_file_bytes: int = Field(default=200 * 1024 * 1024, ge=1)

    # Parsing in a worker process (ragline/isolation.py), so that a file crafted to hang or to exhaust
    # memory is cut off and reported as that file's failure while the run goes on.
    parse_isolation: bool = Field(
        default=True, description="parse in a separate worker process with the time and memory limits below"
    )
    parse_timeout_seconds: float = Field(
        default=120, gt=0, description="a file still parsing after this many seconds fails (its worker is restarted)"
    )
    parse_memory_mb: int = Field(
        default=2048,
        ge=16,
        description="MiB a parse may allocate in the worker beyond the parser libraries; a file needing more fails",
    )

    # Embeddings from an OpenAI-compatible endpoint instead of the local model (embedders/openai_compatible.py).
    embed_base_url: str | None = Field(default=None, description="OpenAI-compatible base URL, e.g. https://host/v1")
    embed_model: str | None = Field(default=None, description="embedding model name at that endpoint")
    embed_api_key: SecretStr | None = None
    embed_dim: int | None = Field(default=None, ge=1, description="vector size the endpoint returns")
    embed_tokenizer: Path | None = Field(
        default=None, description="local Hugging Face tokenizer dir that counts tokens as the endpoint's model does"
    )
    embed_tokens_per_minute: int | None = Field(default=None, ge=1, description="token budget per minute")

    # Query service (query/): generation provider, API keys, cache. Several providers, routing and
    # scoped keys come from the config file's `query:` section; these cover a single provider.
    llm_base_url: str | None = Field(default=None, description="OpenAI-compatible chat-completions base URL")
    llm_model: str | None = None
    llm_api_key: SecretStr | None = None
    llm_external: bool = Field(default=True, description="true: question and context are redacted before the call")
    api_keys: SecretStr | None = Field(default=None, description="comma-separated keys accepted as Bearer tokens")
    redis_url: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("REDIS_URL", "RAGLINE_REDIS_URL"), description="query cache"
    )
    cache_ttl_seconds: int = Field(default=3600, ge=0)

    @property
    def resolved_ledger_url(self) -> str:
        return self.ledger_url or f"sqlite:///{(self.data_dir / 'ledger.db').resolve()}"

    @property
    def qdrant_path(self) -> Path:
        """The embedded store's folder; each engine has its own (their files are not interchangeable)."""
        return self.data_dir / ("qdrant-edge" if self.embedded_engine == "edge" else "qdrant")
