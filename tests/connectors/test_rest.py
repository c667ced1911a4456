"""The generic REST connector, configured for the local HubSpot-shaped server, and against odd JSON layouts."""

from __future__ import annotations

import json

import httpx
import pytest

from connectors.rest import RestConnector, flatten, get_path
from ragline.errors import ConfigError, FetchError, SourceError
from tests.connectors.contract import ConnectorContract, listing
from tests.support.crm_server import CrmServer

TOKEN = "rest-test-token-5e1a"
CONTACT_PROPERTIES = "firstname,lastname,email,message"


@pytest.fixture
def crm():
    with CrmServer(token=TOKEN) as server:
        yield server


@pytest.fixture
def connect(crm):
    """RestConnectors pointed at the contacts endpoint; closed at teardown."""
    made: list[RestConnector] = []

    def make(**overrides) -> RestConnector:
        options = {
            "base_url": crm.url,
            "path": "/crm/v3/objects/contacts",
            "token": TOKEN,
            "params": {"properties": CONTACT_PROPERTIES, "archived": "false"},
            "detail_path": "/crm/v3/objects/contacts/{id}",
            "detail_params": {"properties": CONTACT_PROPERTIES},
            "title_field": "properties.firstname",
            "requests_per_second": 0,
            "backoff": 0.02,
            "max_retry_time": 20.0,
        }
        options.update(overrides)
        connector = RestConnector("crm-contacts", **options)
        made.append(connector)
        return connector

    yield make
    for connector in made:
        connector.close()


class ContactSource:
    """Documents are contacts whose `message` property holds the text; delete() archives the contact."""

    def __init__(self, crm: CrmServer, connect, **options):
        self.crm, self.connect, self.options = crm, connect, options
        self.ids: dict[str, str] = {}

    def put(self, key, text):
        if key in self.ids:
            self.crm.update("contacts", self.ids[key], message=text)
        else:
            self.ids[key] = self.crm.add("contacts", {"firstname": key, "email": f"{key}@example.test", "message": text})

    def delete(self, key):
        self.crm.archive("contacts", self.ids[key])

    def connector(self):
        return self.connect(**self.options)

    def doc_id(self, key):
        return self.ids[key]


class TestRestDetailContract(ConnectorContract):
    """Listing for fingerprints, GET detail_path for the document."""

    @pytest.fixture
    def source(self, crm, connect):
        return ContactSource(crm, connect)


class TestRestListingOnlyContract(ConnectorContract):
    """No detail endpoint: the listed record is the document (fetch lists again), with explicit text_fields."""

    @pytest.fixture
    def source(self, crm, connect):
        return ContactSource(crm, connect, detail_path=None, detail_params=None, page_size=2,
                             text_fields=["properties.email", "properties.message"])


def test_rendering_of_a_record(crm, connect):
    cid = crm.add("contacts", {"firstname": "Ada", "lastname": "Lovelace", "email": "ada@acme.test", "message": "Hi"})
    connector = connect()
    raw = connector.fetch(listing(connector)[cid])
    text = raw.data.decode()
    assert text.splitlines()[0] == "Ada"
    assert "properties.lastname: Lovelace\n" in text and "properties.email: ada@acme.test\n" in text
    assert "updatedAt" not in text.split("\n", 1)[1].split(":")[0]  # the fingerprint field is not rendered
    assert raw.filename == f"{cid}.txt"
    assert raw.metadata["url"] == f"{crm.url}/crm/v3/objects/contacts/{cid}"
    assert connector.location == f"{crm.url}/crm/v3/objects/contacts" and TOKEN not in repr(connector)


def test_link_style_pagination_follows_next_links(crm, connect):
    ids = crm.add_many("contacts", 30)
    connector = connect(next_cursor_path=None, next_link_path="paging.next.link", page_size=7)
    refs = [r.doc_id for r in connector.list()]
    assert refs == ids
    log = crm.requests
    assert len(log) == 5
    assert [r.param("after") for r in log] == [None, ids[6], ids[13], ids[20], ids[27]]
    assert all(r.param("limit") == "7" and r.param("properties") == CONTACT_PROPERTIES for r in log)


def test_a_next_link_to_another_site_is_refused_and_gets_no_token(crm, connect):
    crm.add_many("contacts", 5)
    crm.link_base = "http://collector.invalid:8080"
    connector = connect(next_cursor_path=None, next_link_path="paging.next.link", page_size=2)
    with pytest.raises(SourceError, match="another site"):
        list(connector.list())
    assert len(crm.requests) == 1


def test_429s_and_500s_are_retried_through_the_shared_policy(crm, connect):
    ids = crm.add_many("contacts", 120)
    crm.rate_limit(0.25, retry_after="0.2")
    crm.fail_next(2, skip=1)
    connector = connect(page_size=10)
    assert [r.doc_id for r in connector.list()] == ids
    statuses = [r.status for r in crm.requests]
    assert 429 in statuses and statuses.count(500) == 2


def test_errors_map_to_source_and_fetch_errors(crm, connect):
    cid = crm.add("contacts", {"firstname": "Ada"})
    with pytest.raises(SourceError) as info:
        list(connect(token="nope-wrong-token").list())
    assert "token rejected (401)" in info.value.reason and "nope-wrong-token" not in str(info.value)

    crm.break_page("contacts")
    with pytest.raises(SourceError, match="not JSON"):
        list(connect().list())
    crm.clear_faults()

    connector = connect()
    ref = listing(connector)[cid]
    crm.delete("contacts", cid)
    with pytest.raises(FetchError, match="disappeared"):
        connector.fetch(ref)
    with pytest.raises(FetchError, match="disappeared"):
        connect(detail_path=None).fetch(ref)


def test_a_record_without_id_or_timestamp_is_skipped(crm, connect):
    keep = crm.add("contacts", {"firstname": "Ada"})
    bad = crm.add("contacts", {"firstname": "Bob"})
    crm.corrupt("contacts", bad, "no_id")
    connector = connect()
    assert [r.doc_id for r in connector.list()] == [keep]
    assert connector.skipped == [("?", "a listed record has no 'id'")]
    connector = connect(updated_at_field="meta.updated")
    assert list(connector.list()) == []
    assert connector.skipped == [(keep, "record has no 'meta.updated'"), ("?", "a listed record has no 'id'")]


# --------------------------------------------------------------------------- other JSON layouts (MockTransport)


def items_api(request: httpx.Request) -> httpx.Response:
    """data.items with a next_cursor, ids as integers, no updated-at field, an auth header of its own."""
    if request.headers.get("X-Api-Key") != "k3y":
        return httpx.Response(403, json={"message": "forbidden"})
    if request.url.path == "/v2/people/7":
        return httpx.Response(200, json={"data": {"id": 7, "name": "Grace", "tags": ["navy", "cobol"]}})
    if request.url.path.startswith("/v2/people/"):
        return httpx.Response(404, json={"message": "not found"})
    page = request.url.params.get("cursor")
    if page is None:
        body = {"data": {"items": [{"id": 7, "name": "Grace", "tags": ["navy", "cobol"]}], "next_cursor": "p2"}}
    else:
        body = {"data": {"items": [{"id": 8, "name": "Alan", "address": {"city": "Wilmslow"}}], "next_cursor": None}}
    return httpx.Response(200, json=body)


def test_a_different_layout_is_configuration_not_code():
    client = httpx.Client(transport=httpx.MockTransport(items_api), base_url="https://api.example.test")
    connector = RestConnector(
        "people", base_url="https://api.example.test", path="/v2/people", token="k3y", auth_header="X-Api-Key",
        auth_scheme=None, records_path="data.items", updated_at_field=None, next_cursor_path="data.next_cursor",
        cursor_param="cursor", page_size_param="per_page", detail_path="/v2/people/{id}", detail_record_path="data",
        title_field="name", requests_per_second=0, client=client,
    )
    refs = listing(connector)
    assert set(refs) == {"7", "8"}
    assert all(len(r.fingerprint) == 64 for r in refs.values())  # hash of the listed record
    assert listing(connector)["7"].fingerprint == refs["7"].fingerprint
    raw = connector.fetch(refs["7"])
    assert raw.data.decode() == "Grace\nname: Grace\ntags: navy, cobol\n"
    with pytest.raises(FetchError, match="disappeared"):
        connector.fetch(refs["8"])
    denied = RestConnector("people", base_url="https://api.example.test", path="/v2/people", token="bad",
                           auth_header="X-Api-Key", auth_scheme=None, records_path="data.items", client=client)
    with pytest.raises(SourceError, match=r"\(403\)"):
        list(denied.list())


def test_get_path_and_flatten():
    data = {"a": {"b": [{"c": 1}, {"c": 2}]}, "n": None, "t": True, "l": [1, 2]}
    assert get_path(data, "a.b.1.c") == 2
    assert get_path(data, "a.x", "dflt") == "dflt"
    assert get_path(data, "") is data
    assert dict(flatten(data)) == {"a.b.0.c": "1", "a.b.1.c": "2", "t": "true", "l": "1, 2"}
    assert json.dumps(dict(flatten({}))) == "{}"


def test_configuration_errors():
    with pytest.raises(ConfigError, match="{id}"):
        RestConnector("x", base_url="https://a.test", path="/p", detail_path="/p/detail")


def test_connect_errors_and_timeouts_are_retried_then_given_up():
    calls = {"n": 0}

    def flaky(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            raise httpx.ConnectError("refused", request=request)
        if calls["n"] == 2:
            raise httpx.ReadTimeout("slow", request=request)
        return httpx.Response(200, json={"results": [{"id": "1", "updatedAt": "2024-01-01T00:00:00Z"}]})

    client = httpx.Client(transport=httpx.MockTransport(flaky))
    connector = RestConnector("r", base_url="https://api.example.test", path="/things", requests_per_second=0,
                              backoff=0.01, client=client)
    assert [r.doc_id for r in connector.list()] == ["1"] and calls["n"] == 3

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("no route", request=request)

    connector = RestConnector("r", base_url="https://api.example.test", path="/things", requests_per_second=0,
                              backoff=0.01, max_attempts=3, client=httpx.Client(transport=httpx.MockTransport(down)))
    with pytest.raises(SourceError, match=r"ConnectTimeout \(gave up after 3 attempt"):
        list(connector.list())
