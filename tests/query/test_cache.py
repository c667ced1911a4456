"""The response cache: key normalisation, the in-process TTL cache, Redis (real server) and its
outages, and the ledger's index version that keys depend on."""

from __future__ import annotations

import logging
import socket
import threading
import time

import pytest
import redis
from pydantic import SecretStr

from query.cache import KEY_PREFIX, MemoryCache, RedisCache, build_cache, cache_key, normalise_question
from ragline.errors import ConfigError
from ragline.ledger import Ledger

# -- keys ----------------------------------------------------------------------------------------


def key(question: str = "What is the refund policy?", **overrides) -> str:
    args = {"filters": {"source": ["docs"]}, "k": 5, "index_version": "coll_v1@run3", "extra": None}
    args.update(overrides)
    return cache_key("ask", question, **args)


def test_questions_differing_in_case_spacing_and_final_marks_share_a_key():
    base = key("What is the refund policy?")
    assert key("what is the REFUND policy") == base
    assert key("  What   is\tthe refund\npolicy ?! ") == base
    assert key("What is the refund policy？") == base  # full-width question mark, NFKC
    assert key("What is the refund policy...") == base


def test_normalise_question_keeps_inner_punctuation():
    assert normalise_question("Straße  A.B.C.?") == "strasse a.b.c"
    assert normalise_question("Is v2.0 out?") == "is v2.0 out"


def test_anything_else_that_decides_the_response_changes_the_key():
    base = key()
    variants = [
        key("What is the return policy?"),
        key(filters={"source": ["hr"]}),
        key(filters=None),
        key(k=6),
        key(index_version="coll_v1@run4"),
        key(extra={"model": "large"}),
        cache_key("search", "What is the refund policy?", filters={"source": ["docs"]}, k=5, index_version="coll_v1@run3"),
    ]
    assert len({base, *variants}) == len(variants) + 1


def test_filter_order_and_empty_mappings_do_not_change_the_key():
    a = key(filters={"source": ["docs"], "doc_type": "pdf"})
    b = key(filters={"doc_type": "pdf", "source": ["docs"]})
    assert a == b
    assert key(filters=None, extra=None) == key(filters={}, extra={})
    assert key(filters={"source": {"b", "a"}}) == key(filters={"source": {"a", "b"}})


def test_a_filter_value_that_has_no_canonical_form_is_refused():
    with pytest.raises(TypeError, match="object"):
        key(filters={"source": object()})


# -- in-process ----------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_memory_cache_entries_expire_after_their_ttl():
    clock = FakeClock()
    cache = MemoryCache(maxsize=10, ttl=60, timer=clock)
    cache.set("short", {"a": 1}, ttl_seconds=5)
    cache.set("long", {"b": 2}, ttl_seconds=30)
    clock.now += 4.9
    assert cache.get("short") == {"a": 1}
    clock.now += 0.2
    assert cache.get("short") is None
    assert cache.get("long") == {"b": 2}
    clock.now += 30
    assert cache.get("long") is None


def test_memory_cache_caps_ttl_at_its_own():
    clock = FakeClock()
    cache = MemoryCache(maxsize=10, ttl=10, timer=clock)
    cache.set("k", {"a": 1}, ttl_seconds=3600)
    clock.now += 11
    assert cache.get("k") is None


def test_memory_cache_is_bounded_and_returns_copies():
    cache = MemoryCache(maxsize=3, ttl=60)
    for i in range(5):
        cache.set(f"k{i}", {"i": i}, ttl_seconds=60)
    assert len(cache) == 3
    assert cache.get("k0") is None and cache.get("k4") == {"i": 4}
    got = cache.get("k4")
    got["i"] = 99
    assert cache.get("k4") == {"i": 4}


def test_memory_cache_refuses_values_redis_could_not_hold():
    cache = MemoryCache()
    with pytest.raises(TypeError):
        cache.set("k", {"when": object()}, ttl_seconds=60)
    with pytest.raises(ValueError, match="ttl_seconds"):
        cache.set("k", {"a": 1}, ttl_seconds=0)


def test_memory_cache_from_many_threads():
    cache = MemoryCache(maxsize=50, ttl=60)

    def work(n: int) -> None:
        for i in range(200):
            cache.set(f"{n}-{i % 60}", {"n": n, "i": i}, ttl_seconds=60)
            cache.get(f"{(n + 1) % 4}-{i % 60}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(cache) == 50


def test_build_cache_picks_memory_without_a_url():
    assert build_cache(None, ttl_seconds=60).name == "memory"
    assert build_cache("", ttl_seconds=60).name == "memory"
    assert build_cache(SecretStr(""), ttl_seconds=60).name == "memory"


# -- Redis ---------------------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.redis
def test_redis_cache_round_trip_with_prefix_and_ttl(redis_url):
    cache = build_cache(SecretStr(redis_url), ttl_seconds=60)
    assert cache.name == "redis" and cache.ping()
    value = {"body": {"answer": "Ünïcode ok", "n": [1, 2.5, None]}, "hits": ["c1"]}
    cache.set("abc", value, ttl_seconds=120)
    assert cache.get("abc") == value
    assert cache.get("missing") is None

    raw = redis.Redis.from_url(redis_url)
    try:
        assert raw.exists(KEY_PREFIX + "abc") == 1
        assert 115 <= raw.ttl(KEY_PREFIX + "abc") <= 120
        raw.set(KEY_PREFIX + "junk", b"not json{")
        assert cache.get("junk") is None  # a corrupt entry is a miss, not an error
    finally:
        raw.close()


@pytest.mark.redis
def test_redis_entries_expire(redis_url):
    cache = RedisCache(redis_url)
    cache.set("soon", {"a": 1}, ttl_seconds=1)
    assert cache.get("soon") == {"a": 1}
    time.sleep(1.2)
    assert cache.get("soon") is None


def test_dead_redis_costs_little_and_is_logged_once_without_the_url(caplog):
    url = f"redis://:hunter2-secret@127.0.0.1:{closed_port()}/0"
    cache = build_cache(SecretStr(url), ttl_seconds=60)
    assert "hunter2" not in repr(cache)
    caplog.set_level(logging.INFO, logger="query.cache")
    started = time.monotonic()
    assert cache.get("k") is None
    cache.set("k", {"a": 1}, ttl_seconds=60)  # does not raise
    assert cache.get("k") is None
    assert time.monotonic() - started < 1.0
    assert cache.ping() is False
    assert cache.failures >= 2  # the first get and the ping; calls in between are skipped
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "hunter2" not in caplog.text and str(url.split("@")[1]) not in caplog.text


def test_a_value_that_is_not_json_raises_even_while_redis_is_down():
    cache = RedisCache(f"redis://127.0.0.1:{closed_port()}/0")
    with pytest.raises(TypeError):
        cache.set("k", {"x": object()}, ttl_seconds=60)


def test_a_bad_redis_url_is_refused_without_echoing_it():
    with pytest.raises(ConfigError) as info:
        build_cache(SecretStr("http://user:s3cret@host:6379"), ttl_seconds=60)
    assert "s3cret" not in str(info.value) and "http" in str(info.value)


class Forwarder:
    """A TCP relay in front of the real Redis that can be cut and restored, on one port."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.port = closed_port()
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        assert self._listener is not None
        try:  # shutdown wakes the thread blocked in accept(); close alone does not on Linux
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        for s in self._sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass


@pytest.mark.redis
def test_redis_cache_recovers_by_itself_after_an_outage(redis_url, caplog):
    host_port = redis_url.split("//")[1].split("/")[0]
    host, port = host_port.rsplit(":", 1)
    relay = Forwarder((host, int(port)))
    relay.start()
    clock = FakeClock()
    cache = RedisCache(f"redis://127.0.0.1:{relay.port}/15", timer=clock, retry_after_seconds=2)
    caplog.set_level(logging.INFO, logger="query.cache")
    try:
        cache.set("k", {"a": 1}, ttl_seconds=60)
        assert cache.get("k") == {"a": 1}

        relay.stop()
        assert cache.get("k") is None
        assert cache.down and cache.ping() is False
        relay.start()
        assert cache.get("k") is None  # within retry_after_seconds Redis is not tried
        clock.now += 2.5
        assert cache.get("k") == {"a": 1}
        assert not cache.down and cache.ping() is True
        assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.INFO]
    finally:
        cache.close()
        relay.stop()


# -- the ledger's index version --------------------------------------------------------------------


def test_index_version_follows_runs_that_may_change_the_store(ledger_url):
    ledger = Ledger(ledger_url)
    try:
        empty = ledger.index_version()
        assert ledger.index_version() == empty  # stable while nothing happens

        dry = ledger.begin_run("docs", dry_run=True)
        ledger.finish_run(dry, status="dry-run", counts={}, seconds=0.1, report={})
        assert ledger.index_version() == empty

        run = ledger.begin_run("docs", dry_run=False)
        running = ledger.index_version()
        assert running != empty

        ledger.finish_run(run, status="ok", counts={"added": 1}, seconds=0.1, report={})
        finished = ledger.index_version()
        assert finished != running

        dry = ledger.begin_run("docs", dry_run=True)
        assert ledger.index_version() == finished
        ledger.finish_run(dry, status="dry-run", counts={}, seconds=0.1, report={})
        assert ledger.index_version() == finished
    finally:
        ledger.close()


def test_index_version_sees_a_run_finish_behind_a_newer_run_of_another_source(ledger_url):
    ledger = Ledger(ledger_url)
    try:
        first = ledger.begin_run("docs", dry_run=False)
        ledger.begin_run("wiki", dry_run=False)  # newer, still running
        both_running = ledger.index_version()
        ledger.finish_run(first, status="ok", counts={}, seconds=0.1, report={})
        assert ledger.index_version() != both_running
    finally:
        ledger.close()
