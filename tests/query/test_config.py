"""The query service's configuration: the example file, environment-only deployments, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from query.auth import KeyRing, RateLimits, bearer_token
from query.config import key_digest, load_query_config, resolve_key_digests
from query.gateway import Gateway
from ragline.config import Settings
from ragline.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ragline.yaml"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in ("RAGLINE_API_KEYS", "RAGLINE_LLM_BASE_URL", "RAGLINE_LLM_MODEL", "RAGLINE_LLM_API_KEY", "RAGLINE_LLM_EXTERNAL"):
        monkeypatch.delenv(name, raising=False)


def test_the_example_file_builds_providers_routing_and_keys():
    config = load_query_config(Settings(), EXAMPLE)
    assert [p.name for p in config.providers] == ["local", "cloud"]
    assert config.routing.small == ["local", "cloud"]
    gateway = Gateway.from_configs(config.providers, config.routing, environ={"LLM_API_KEY": "sk-test"})
    assert [p.name for p in gateway.providers()] == ["local", "cloud"]
    digests = resolve_key_digests(config, {"HR_BOT_API_KEY": "hr-secret"})
    assert digests[key_digest("hr-secret")].sources == ["handbook"]
    assert config.redaction.extra_patterns == {"EMPLOYEE_ID": r"EMP-\d{6}"}


def test_environment_alone_gives_keys_and_one_provider(monkeypatch):
    monkeypatch.setenv("RAGLINE_API_KEYS", "alpha-key, beta-key,")
    monkeypatch.setenv("RAGLINE_LLM_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("RAGLINE_LLM_MODEL", "m1")
    monkeypatch.setenv("RAGLINE_LLM_API_KEY", "sk-env")
    monkeypatch.setenv("RAGLINE_LLM_EXTERNAL", "false")
    config = load_query_config(Settings(), None)
    assert len(config.api_keys) == 2 and all(k.sha256 and "alpha" not in k.id for k in config.api_keys)
    (only,) = config.providers
    assert (only.base_url, only.model, only.external, only.api_key_env) == ("http://127.0.0.1:9/v1", "m1", False, "RAGLINE_LLM_API_KEY")
    ring = KeyRing(resolve_key_digests(config, {}), default_requests_per_minute=60)
    assert ring.identify("beta-key") is not None and ring.identify("gamma-key") is None and ring.identify(None) is None


def test_a_base_url_without_a_model_is_refused(monkeypatch):
    monkeypatch.setenv("RAGLINE_LLM_BASE_URL", "http://127.0.0.1:9/v1")
    with pytest.raises(ConfigError, match="RAGLINE_LLM_MODEL"):
        load_query_config(Settings(), None)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("api_keys: [{id: a, sha256: nothex}]", "query.api_keys.0.sha256"),
        ("api_keys: [{id: a}]", "exactly one of sha256 or key_env"),
        ("api_keys: [{id: a, key_env: X}, {id: a, key_env: Y}]", "a given twice"),
        ("limits: {max_k: 0}", "query.limits.max_k"),
        ("providers: [{name: p, base_url: 'http://h/v1'}]", "query.providers.0.model"),
        ("cache: {}", "query.cache"),
    ],
)
def test_errors_name_the_file_and_the_field(tmp_path, section, message):
    path = tmp_path / "ragline.yaml"
    path.write_text(f"query:\n  {section}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_query_config(Settings(), path)
    assert str(path) in str(raised.value) and message in str(raised.value)


def test_a_key_from_an_unset_variable_is_a_clear_error(tmp_path):
    path = tmp_path / "ragline.yaml"
    path.write_text("query:\n  api_keys: [{id: bot, key_env: BOT_KEY}]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="'bot': environment variable BOT_KEY is not set"):
        resolve_key_digests(load_query_config(Settings(), path), {})


def test_bearer_parsing_and_token_buckets():
    assert bearer_token("Bearer abc") == "abc" and bearer_token("bearer  abc ") == "abc"
    assert bearer_token("Basic abc") is None and bearer_token("Bearer") is None and bearer_token(None) is None
    now = [0.0]
    limits = RateLimits(clock=lambda: now[0])
    from query.auth import Caller

    caller = Caller(key_id="k", sources=None, requests_per_minute=2)
    assert limits.take(caller) == 0 and limits.take(caller) == 0
    assert limits.take(caller) == pytest.approx(30.0)  # one token every 30 s
    now[0] = 30.0
    assert limits.take(caller) == 0
