"""The HubSpot connector against a local server speaking HubSpot's CRM v3 shapes (tests/support/crm_server.py)."""

from __future__ import annotations

import itertools
import logging
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from connectors.http import RateLimiter, retry_after_seconds
from connectors.hubspot import HubSpotConnector, html_to_text
from ragline import parsers
from ragline.errors import ConfigError, FetchError, SourceError
from ragline.types import Deletion, DocRef, IncrementalConnector
from tests.connectors.contract import ConnectorContract, listing
from tests.support.crm_server import OBJECT_TYPES, CrmServer

TOKEN = "pat-na1-test-7f3c9d2e-secret"


@pytest.fixture
def crm():
    with CrmServer(token=TOKEN) as server:
        yield server


@pytest.fixture
def connect(crm):
    """Build connectors against the server (fast retries, no rate budget unless asked); closed at teardown."""
    made: list[HubSpotConnector] = []

    def make(**overrides) -> HubSpotConnector:
        options = {"base_url": crm.url, "token": TOKEN, "requests_per_second": 0, "backoff": 0.02,
                   "max_retry_time": 20.0, "search_requests_per_second": 0, "clock": crm.now}
        options.update(overrides)
        connector = HubSpotConnector("hubspot", **options)
        made.append(connector)
        return connector

    yield make
    for connector in made:
        connector.close()


# --------------------------------------------------------------------------- contract


class NoteSource:
    """Documents are notes: put() creates or rewrites hs_note_body, delete() archives the note."""

    def __init__(self, crm: CrmServer, connect):
        self.crm, self.connect = crm, connect
        self.ids: dict[str, str] = {}

    def put(self, key, text):
        if key in self.ids:
            self.crm.update("notes", self.ids[key], hs_note_body=text)
        else:
            self.ids[key] = self.crm.add("notes", {"hs_note_body": text}, owner="77")

    def delete(self, key):
        self.crm.archive("notes", self.ids[key])

    def connector(self):
        return self.connect()

    def doc_id(self, key):
        return f"notes/{self.ids[key]}"


class TestHubSpotContract(ConnectorContract):
    @pytest.fixture
    def source(self, crm, connect):
        return NoteSource(crm, connect)


# --------------------------------------------------------------------------- fixtures of data


def seed_crm(crm: CrmServer) -> set[str]:
    """2,200 records over all five object types; returns the doc_ids a listing must produce."""
    counts = {"contacts": 800, "companies": 400, "deals": 500, "tickets": 200, "notes": 300}
    expected = set()
    for object_type, count in counts.items():
        ids = crm.add_many(object_type, count)
        expected |= {f"{object_type}/{i}" for i in ids}
    return expected


def listed_ids(connector) -> list[str]:
    return [ref.doc_id for ref in connector.list()]


def throughput(label: str, records: int, seconds: float, requests: int) -> None:
    print(f"\n[throughput] {label}: {records} records in {seconds:.2f} s = {records / seconds:,.0f} records/s "
          f"({requests} requests)")


# --------------------------------------------------------------------------- listing


def test_pagination_lists_2200_records_over_five_types_exactly_once(crm, connect):
    expected = seed_crm(crm)
    connector = connect(requests_per_second=10.0)  # the default budget
    started = time.perf_counter()
    ids = listed_ids(connector)
    elapsed = time.perf_counter() - started
    assert len(ids) == len(set(ids)) == len(expected) == 2200
    assert set(ids) == expected
    pages = [r for r in crm.requests if r.status == 200]
    assert len(pages) == 8 + 4 + 5 + 2 + 3  # 100 per page
    assert all(r.param("properties") in ("lastmodifieddate", "hs_lastmodifieddate") for r in pages)
    assert all(r.param("archived") == "false" for r in pages)
    throughput("no faults, 10 req/s budget, 100 per page", len(ids), elapsed, len(crm.requests))


def test_listing_survives_429s_and_waits_out_every_retry_after(crm, connect):
    expected = seed_crm(crm)
    crm.rate_limit(0.2, retry_after=["1", "0.3"])  # HubSpot sends whole seconds; fractions are accepted too
    connector = connect(requests_per_second=10.0)
    started = time.perf_counter()
    ids = listed_ids(connector)
    elapsed = time.perf_counter() - started
    assert len(ids) == len(set(ids)) == len(expected)
    assert set(ids) == expected

    log = crm.requests
    throttled = [i for i, r in enumerate(log) if r.status == 429]
    assert throttled, "the seeded share produced no 429 at all"
    gaps = []
    for i in throttled:
        assert i + 1 < len(log), "a 429 was the last request: the listing gave up"
        gap = log[i + 1].t - log[i].t
        gaps.append(gap - float(log[i].retry_after))
        assert gap >= float(log[i].retry_after), f"request {i + 1} came {gap:.3f} s after a 429 asking for {log[i].retry_after} s"
        assert log[i + 1].path == log[i].path and log[i + 1].query == log[i].query  # the same page, retried
    print(f"\n[429] {len(throttled)} of {len(log)} requests answered 429; waited past Retry-After by "
          f"{min(gaps) * 1000:.1f}..{max(gaps) * 1000:.1f} ms")
    throughput("20% 429s (Retry-After 1 s / 0.3 s), 10 req/s budget", len(ids), elapsed, len(log))


def test_a_burst_of_500s_is_retried_and_the_listing_completes(crm, connect):
    expected = seed_crm(crm)
    crm.fail_next(3, skip=5)
    ids = listed_ids(connect(max_attempts=6))
    assert sorted(ids) == sorted(expected)
    statuses = [r.status for r in crm.requests]
    assert statuses.count(500) == 3 and statuses[5:8] == [500, 500, 500]


def test_a_500_storm_longer_than_max_attempts_raises_source_error(crm, connect):
    seed_crm(crm)
    crm.fail_next(100, skip=3)  # first three pages succeed, then the server stays down
    connector = connect(max_attempts=4)
    yielded = []
    with pytest.raises(SourceError) as info:
        for ref in connector.list():
            yielded.append(ref)  # noqa: PERF402 - keep what came before the error
    assert 0 < len(yielded) < 2200  # partial refs were seen, but the listing ended in an error, not normally
    assert "server error (500)" in info.value.reason and "4 attempt" in info.value.reason
    assert "incomplete" in info.value.reason
    assert [r.status for r in crm.requests].count(500) == 4


def test_a_retry_after_beyond_the_time_budget_gives_up_at_once(crm, connect):
    crm.add("contacts", {"firstname": "Ada"})
    crm.rate_limit(1.0, retry_after="3600")
    started = time.monotonic()
    connector = connect(max_retry_time=30)
    with pytest.raises(SourceError, match="3600 s"):
        listed_ids(connector)
    assert time.monotonic() - started < 5
    assert len(crm.requests) == 1
    crm.clear_faults()  # and the refused wait does not hold up the connector's next call
    started = time.monotonic()
    assert len(listed_ids(connector)) == 1 and time.monotonic() - started < 5


def test_a_rejected_token_is_a_source_error_that_never_shows_the_token(crm, connect, caplog):
    crm.add("contacts", {"firstname": "Ada"})
    wrong = "pat-na1-WRONG-0b1d4c-secret"
    caplog.set_level(logging.DEBUG)
    connector = connect(token=wrong)
    with pytest.raises(SourceError) as info:
        listed_ids(connector)
    assert "token rejected (401)" in str(info.value)
    assert len(crm.requests) == 1  # 401 is permanent: no retry
    for text in (str(info.value), repr(info.value), info.value.reason, caplog.text, repr(connector), connector.location):
        assert wrong not in text and TOKEN not in text


def test_a_malformed_record_is_skipped_with_a_reason_and_the_rest_are_listed(crm, connect):
    expected = seed_crm(crm)
    bad_props = crm.ids("contacts")[150]
    no_id = crm.ids("deals")[7]
    crm.corrupt("contacts", bad_props, "properties")
    crm.corrupt("deals", no_id, "no_id")
    connector = connect()
    ids = listed_ids(connector)
    assert set(ids) == expected - {f"contacts/{bad_props}", f"deals/{no_id}"}
    assert sorted(connector.skipped) == sorted([
        (f"contacts/{bad_props}", "record 'properties' is not an object"),
        ("?", "a deals record has no id"),
    ])
    # a second listing starts from a clean slate: the skipped list is not appended to
    assert len(listed_ids(connector)) == len(expected) - 2 and len(connector.skipped) == 2


def test_a_page_that_is_not_json_raises_source_error(crm, connect):
    seed_crm(crm)
    crm.break_page("companies", after=crm.ids("companies")[99])  # the second page of companies
    with pytest.raises(SourceError) as info:
        listed_ids(connect())
    assert "listing companies, page 2" in info.value.reason and "not JSON" in info.value.reason


def test_the_requests_per_second_budget_is_respected(crm, connect):
    crm.add_many("contacts", 200)
    connector = connect(objects=("contacts",), page_size=10, requests_per_second=20.0)
    assert len(listed_ids(connector)) == 200
    times = [r.t for r in crm.requests]
    assert len(times) == 20
    gaps = [b - a for a, b in itertools.pairwise(times)]
    rate = (len(times) - 1) / (times[-1] - times[0])
    print(f"\n[budget] 20 req/s asked: measured {rate:.1f} req/s, smallest gap {min(gaps) * 1000:.1f} ms")
    assert rate <= 20.0 * 1.05
    # No n+1 requests within n/20 s anywhere (allowing 25 ms of scheduling jitter on arrival times).
    worst = min(times[j] - times[i] - (j - i) / 20.0 for i in range(len(times)) for j in range(i + 1, len(times)))
    assert worst >= -0.025, f"requests came {-worst * 1000:.1f} ms early against the budget"


def test_archived_records_leave_the_listing_and_cannot_be_fetched(crm, connect):
    deal = crm.add("deals", {"dealname": "Big Order", "amount": "1200"})
    other = crm.add("deals", {"dealname": "Small Order"})
    connector = connect(objects=("deals",))
    refs = listing(connector)
    assert set(refs) == {f"deals/{deal}", f"deals/{other}"}
    crm.archive("deals", deal)
    assert set(listing(connector)) == {f"deals/{other}"}
    with pytest.raises(FetchError, match="disappeared"):
        connector.fetch(refs[f"deals/{deal}"])


# --------------------------------------------------------------------------- fetch and rendering


def test_a_rendered_record_has_its_properties_associations_and_metadata(crm, connect):
    acme = crm.add("companies", {"name": "Acme", "domain": "acme.test"})
    globex = crm.add("companies", {"name": "Globex"})
    ada = crm.add("contacts", {"firstname": "Ada", "lastname": "Lovelace", "email": "ada@acme.test",
                               "jobtitle": "Analyst", "phone": ""},
                  associations={"companies": [acme, globex]}, owner="512")
    deal = crm.add("deals", {"dealname": "Big Order", "amount": "1200", "dealstage": "closedwon"},
                   associations={"contacts": [ada], "companies": [acme]})
    note = crm.add("notes", {"hs_note_body": "<p>Called Ada.</p><p>She wants <b>12</b> tents &amp; pegs.</p>"},
                   associations={"contacts": [ada]})
    connector = connect()
    refs = listing(connector)

    raw = connector.fetch(refs[f"contacts/{ada}"])
    text = raw.data.decode()
    assert text.splitlines()[0] == "Contact: Ada Lovelace"
    assert "First name: Ada\n" in text and "Email: ada@acme.test\n" in text and "Job title: Analyst\n" in text
    assert "Phone:" not in text  # empty properties are left out
    assert f"Associated companies: {acme}, {globex}" in text
    assert "Last modified" not in text and "lastmodifieddate" not in text
    assert raw.filename == f"contacts-{ada}.txt"
    assert raw.metadata == {"object_type": "contacts", "id": ada, "owner": "512",
                            "url": f"{crm.url}/crm/v3/objects/contacts/{ada}",
                            "updated_at": refs[f"contacts/{ada}"].fingerprint}
    assert "Ada Lovelace" in parsers.parse(raw.filename, raw.data).text

    deal_text = connector.fetch(refs[f"deals/{deal}"]).data.decode()
    assert deal_text.startswith("Deal: Big Order\n") and "Amount: 1200" in deal_text and "Stage: closedwon" in deal_text
    assert f"Associated companies: {acme}" in deal_text and f"Associated contacts: {ada}" in deal_text

    note_text = connector.fetch(refs[f"notes/{note}"]).data.decode()
    assert note_text.startswith("Note: Called Ada.\n")
    assert "She wants 12 tents & pegs." in note_text and "<p>" not in note_text

    fetches = [r for r in crm.requests if r.path.endswith(f"/contacts/{ada}")]
    assert "firstname" in fetches[0].param("properties") and "companies" in fetches[0].param("associations")


def test_touching_a_record_changes_the_fingerprint_but_not_the_content_hash(crm, connect):
    cid = crm.add("contacts", {"firstname": "Ada"})
    connector = connect(objects=("contacts",))
    before = listing(connector)[f"contacts/{cid}"]
    crm.update("contacts", cid)  # only the last-modified date moves
    after = listing(connector)[f"contacts/{cid}"]
    assert before.fingerprint != after.fingerprint
    assert connector.fetch(before).content_hash == connector.fetch(after).content_hash


def test_fetch_of_a_malformed_record_is_a_fetch_error(crm, connect):
    cid = crm.add("contacts", {"firstname": "Ada"})
    connector = connect(objects=("contacts",))
    ref = listing(connector)[f"contacts/{cid}"]
    crm.corrupt("contacts", cid, "properties")
    with pytest.raises(FetchError, match="'properties' is not an object"):
        connector.fetch(ref)


def test_fetch_after_retries_run_out_stops_the_source_instead_of_quarantining_the_record(crm, connect):
    """An API that keeps failing would fail every record after this one too; quarantining them would store
    their fingerprints as if read. The run stops (nothing deleted, cursor kept) and names the record."""
    cid = crm.add("contacts", {"firstname": "Ada"})
    connector = connect(objects=("contacts",), max_attempts=2)
    ref = listing(connector)[f"contacts/{cid}"]
    crm.fail_next(5, status=503)
    with pytest.raises(SourceError, match=rf"contacts/{cid}.*server error \(503\).*2 attempt"):
        connector.fetch(ref)


def test_configuration_errors(crm):
    with pytest.raises(ConfigError, match="unknown object"):
        HubSpotConnector("h", base_url=crm.url, token=TOKEN, objects=("contacts", "leads"))
    with pytest.raises(ConfigError, match="token"):
        HubSpotConnector("h", base_url=crm.url, token="")
    with HubSpotConnector("h", base_url=crm.url + "/", token=TOKEN) as connector:
        assert connector.location == crm.url and TOKEN not in repr(connector)
        assert connector.kind == "hubspot"


# --------------------------------------------------------------------------- http.py pieces


def test_retry_after_accepts_seconds_fractions_and_http_dates():
    now = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("1") == 1.0
    assert retry_after_seconds(" 0.2 ") == 0.2
    assert retry_after_seconds(format_datetime(now + timedelta(seconds=7), usegmt=True), now=now) == 7.0
    assert retry_after_seconds(format_datetime(now - timedelta(seconds=7), usegmt=True), now=now) == 0.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds("-3") == 0.0


def test_the_rate_limiter_spaces_threads_evenly():
    import threading

    limiter = RateLimiter(50.0)
    stamps: list[float] = []
    lock = threading.Lock()

    def worker():
        for _ in range(5):
            limiter.acquire()
            with lock:
                stamps.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    stamps.sort()
    assert len(stamps) == 20
    assert (stamps[-1] - stamps[0]) >= 19 / 50 - 0.01


def test_html_to_text():
    assert html_to_text("<div>a<br>b</div><ul><li>c &lt; d</li></ul>") == "a\nb\nc < d"


@pytest.mark.parametrize("object_type", OBJECT_TYPES)
def test_each_object_type_renders_with_a_title(crm, connect, object_type):
    first = {"contacts": {"email": "x@y.test"}, "companies": {"name": "Acme"}, "deals": {"dealname": "D"},
             "tickets": {"subject": "Broken tent"}, "notes": {"hs_note_body": "plain note"}}[object_type]
    rid = crm.add(object_type, first)
    connector = connect(objects=(object_type,))
    raw = connector.fetch(listing(connector)[f"{object_type}/{rid}"])
    title = raw.data.decode().splitlines()[0]
    assert title.split(":")[0] in {"Contact", "Company", "Deal", "Ticket", "Note"} and next(iter(first.values())) in title


def test_a_listing_that_fails_midway_leaves_no_listing_in_the_ledger(crm, connect, tmp_path):
    """What the pipeline sees: load_listing raises and its transaction keeps none of the refs yielded so far."""
    from sqlalchemy import func, select

    from ragline.ledger import Ledger, listing_table

    seed_crm(crm)
    crm.fail_next(100, skip=15)  # 1,500 refs come through before the server goes down for good
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        connector = connect(max_attempts=2)
        ledger.register_source(connector.name, connector.kind, connector.location)
        run = ledger.begin_run(connector.name, dry_run=False)
        with pytest.raises(SourceError, match="incomplete"):
            ledger.load_listing(run, connector.list())
        with ledger.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(listing_table)).scalar() == 0
    finally:
        ledger.close()


# --------------------------------------------------------------------------- changes since a cursor


def changes(connector, since) -> tuple[dict[str, DocRef], set[str]]:
    """(refs by doc_id, ids reported deleted) of one list_changes, checking it never repeats a document."""
    found = connector.list_changes(since)
    assert found.present_ids is None  # partial: only reported deletions delete
    items = list(found.changes)
    ids = [item.doc_id for item in items]
    assert len(ids) == len(set(ids)), "a listing must not repeat a document"
    return ({i.doc_id: i for i in items if isinstance(i, DocRef)},
            {i.doc_id for i in items if isinstance(i, Deletion)})


def millis(moment: datetime) -> str:
    return str(int(moment.timestamp() * 1000))


def test_the_connector_lists_changes(connect):
    assert isinstance(connect(), IncrementalConnector)


def test_the_cursor_is_the_clock_minus_the_margin_in_iso(crm, connect):
    connector = connect()
    now = crm.now()
    assert connector.high_water_mark() == (now - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    with pytest.raises(SourceError, match="not a time"):
        connector.list_changes("yesterday")


def test_changes_are_the_updated_created_and_archived_records_since_the_cursor(crm, connect):
    contacts = crm.add_many("contacts", 40)
    deals = crm.add_many("deals", 30)
    notes = crm.add_many("notes", 30)
    connector = connect()
    before = listing(connector)
    cursor = connector.high_water_mark()  # what the pipeline stores: read before the changes below

    crm.update("contacts", contacts[3], firstname="Adele")
    crm.update("deals", deals[0], amount="990")
    crm.update("notes", notes[29], hs_note_body="rewritten")
    crm.archive("contacts", contacts[7])
    crm.archive("notes", notes[1])
    created = crm.add("deals", {"dealname": "Fresh"})
    crm.clear_log()
    refs, gone = changes(connector, cursor)

    changed = {d for d, ref in refs.items() if d not in before or before[d].fingerprint != ref.fingerprint}
    assert changed == {f"contacts/{contacts[3]}", f"deals/{deals[0]}", f"notes/{notes[29]}", f"deals/{created}"}
    assert gone == {f"contacts/{contacts[7]}", f"notes/{notes[1]}"}
    # The seeded records were modified within the overlap window: they come again, unchanged.
    repeated = set(refs) - changed
    assert repeated and repeated <= set(before) - gone
    # Every search is the HubSpot shape, starting 10 minutes before the cursor.
    searches = [r for r in crm.requests if r.method == "POST"]
    assert {r.path.rsplit("/", 2)[-2] for r in searches} == set(OBJECT_TYPES)
    threshold = millis(datetime.fromisoformat(cursor) - timedelta(minutes=10))
    for r in searches:
        assert r.path.endswith("/search") and r.status == 200
        prop = r.body["sorts"][0]["propertyName"]
        assert r.body["filterGroups"] == [{"filters": [{"propertyName": prop, "operator": "GTE", "value": threshold}]}]
        assert r.body["sorts"] == [{"propertyName": prop, "direction": "ASCENDING"}] and r.body["properties"] == [prop]
    assert {r.param("archived") for r in crm.requests if r.method == "GET"} == {"true"}


def test_records_older_than_the_window_are_not_listed_again(crm, connect):
    notes = crm.add_many("notes", 20)
    crm.archive("notes", notes[0])  # archived long ago: an earlier run deleted it
    crm.advance(timedelta(hours=2))
    connector = connect(objects=("notes",))
    cursor = connector.high_water_mark()
    crm.update("notes", notes[5], hs_note_body="new text")
    refs, gone = changes(connector, cursor)
    assert set(refs) == {f"notes/{notes[5]}"} and gone == set()


@pytest.mark.parametrize("told", [True, False], ids=["ceiling-configured", "ceiling-found-by-400"])
def test_a_search_past_the_result_ceiling_restarts_from_the_last_date_seen(crm, connect, told):
    crm.search_ceiling = 250  # HubSpot's is 10,000
    ids = crm.add_many("notes", 700)
    crm.advance(timedelta(hours=1))
    connector = connect(objects=("notes",), **({"search_ceiling": 250} if told else {}))
    cursor = connector.high_water_mark()
    for record_id in ids[:650]:
        crm.update("notes", record_id, hs_note_body=f"second version of {record_id}")
    refs, gone = changes(connector, cursor)
    assert set(refs) == {f"notes/{i}" for i in ids[:650]} and gone == set()

    searches = [r for r in crm.requests if r.method == "POST"]
    floors = list(dict.fromkeys(r.filter_value() for r in searches))
    assert len(floors) == 3 and floors == sorted(floors, key=int)  # two restarts, each from a later date
    assert [r.status for r in searches].count(400) == (0 if told else 2)
    assert all(int(r.body.get("after") or 0) < 250 for r in searches if r.status == 200)


def test_a_429_during_search_waits_out_retry_after(crm, connect):
    ids = crm.add_many("deals", 250)
    connector = connect(objects=("deals",))
    cursor = connector.high_water_mark()  # all 250 are inside the overlap window
    crm.rate_limit(0.5, retry_after="0.4", limit=2)
    refs, _ = changes(connector, cursor)
    assert set(refs) == {f"deals/{i}" for i in ids}
    log = crm.requests
    throttled = [i for i, r in enumerate(log) if r.status == 429]
    assert len(throttled) == 2 and all(log[i].method == "POST" for i in throttled)
    for i in throttled:
        assert log[i + 1].t - log[i].t >= 0.4
        assert (log[i + 1].method, log[i + 1].path, log[i + 1].body) == ("POST", log[i].path, log[i].body)


def test_a_search_page_that_keeps_failing_raises_source_error(crm, connect):
    crm.add_many("notes", 150)
    connector = connect(objects=("notes",), max_attempts=3)
    cursor = connector.high_water_mark()
    crm.fail_next(10, skip=1)  # the first page answers, the second never does
    with pytest.raises(SourceError) as info:
        changes(connector, cursor)
    reason = info.value.reason
    assert "changes of notes, page 2" in reason and "POST" in reason and "server error (500)" in reason
    assert "3 attempt" in reason and "incomplete" in reason and TOKEN not in reason


@pytest.mark.model
def test_an_incremental_sync_through_the_pipeline(crm, connect, tmp_path, embedder, chunker):
    from ragline.ledger import Ledger
    from ragline.pipeline import sync_source
    from stores.qdrant import QdrantStore

    notes = [crm.add("notes", {"hs_note_body": f"Note {i}: the kayak shed {i} opens at {i + 7} am."}) for i in range(5)]
    deals = [crm.add("deals", {"dealname": f"Paddle order {i}", "amount": str(100 * i)}) for i in range(4)]
    crm.advance(timedelta(hours=1))  # the seeded records lie before the first cursor's overlap window
    connector = connect(objects=("deals", "notes"))
    store = QdrantStore(path=tmp_path / "qdrant")
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")

    def sync():
        return sync_source(connector, store=store, ledger=ledger, embedder=embedder, chunker=chunker)

    def indexed() -> dict[str, set[str]]:
        texts: dict[str, set[str]] = {}
        for _, payload in store.iter_points():
            texts.setdefault(payload["doc_id"], set()).add(payload["text"])
        return texts

    try:
        first = sync()
        assert (first.listing, first.added, first.status) == ("complete", 9, "ok")
        assert first.cursor == ledger.cursor("hubspot")

        crm.update("notes", notes[0], hs_note_body="Note 0: the kayak shed now opens at noon.")
        crm.update("deals", deals[1], amount="12345")
        crm.archive("notes", notes[2])
        crm.archive("deals", deals[3])
        fresh = crm.add("notes", {"hs_note_body": "A new note about paddle boards."})
        second = sync()
        assert second.listing == "changes" and second.status == "ok"
        # Only the changes were listed (the seeded records lie outside the window); the rest count as unchanged.
        assert (second.added, second.updated, second.unchanged, second.deleted) == (1, 2, 5, 2)
        assert second.chunks_embedded == 3
        assert second.cursor == ledger.cursor("hubspot") != first.cursor

        live = {f"notes/{i}" for i in (*notes[:2], *notes[3:], fresh)} | {f"deals/{i}" for i in deals[:3]}
        texts = indexed()
        assert set(texts) == live
        for doc_id in live:
            assert len(texts[doc_id]) == ledger.document("hubspot", doc_id).chunk_count
        assert any("opens at noon" in t for t in texts[f"notes/{notes[0]}"])
        assert not any("opens at 7 am" in t for t in texts[f"notes/{notes[0]}"])

        # The overlap window brings the second run's changes again: they compare equal, nothing is redone.
        third = sync()
        assert third.listing == "changes"
        assert (third.added, third.updated, third.unchanged, third.deleted, third.chunks_embedded) == (0, 0, 8, 0, 0)
        assert set(indexed()) == live
    finally:
        store.close()
        ledger.close()
