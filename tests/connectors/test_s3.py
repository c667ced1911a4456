"""The S3 connector against moto's real HTTP server on 127.0.0.1 (not the in-process mock).

Every test gets its own bucket, so tests share one server without sharing state. Throttling is
injected by a tiny HTTP proxy in front of moto that answers 503 SlowDown a set number of times,
so the retries under test are botocore's own, over real HTTP.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest

from connectors.s3 import S3Connector
from ragline import parsers
from ragline.errors import ConfigError, FetchError, ParseError, SourceError
from ragline.types import DocRef
from tests.connectors.contract import ConnectorContract, listing

CREDS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
REGION = "us-east-1"
BIG_COUNT = 1050


@pytest.fixture(scope="module")
def endpoint(moto_endpoint):
    return moto_endpoint


@pytest.fixture(scope="module")
def s3(endpoint):
    return boto3.client("s3", endpoint_url=endpoint, region_name=REGION, **CREDS)


def new_bucket(s3) -> str:
    name = f"t-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def bucket(s3):
    return new_bucket(s3)


def connector(endpoint, bucket, **kwargs) -> S3Connector:
    kwargs.setdefault("access_key_id", CREDS["aws_access_key_id"])
    kwargs.setdefault("secret_access_key", CREDS["aws_secret_access_key"])
    return S3Connector("docs", bucket=bucket, endpoint_url=endpoint, region=REGION, **kwargs)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- the shared contract -----------------------------------------------------------------------


class BucketSource:
    def __init__(self, s3, endpoint, bucket, prefix="docs/"):
        self.s3, self.endpoint, self.bucket, self.prefix = s3, endpoint, bucket, prefix

    def put(self, key, text):
        self.s3.put_object(Bucket=self.bucket, Key=f"{self.prefix}{key}.txt", Body=text.encode())

    def delete(self, key):
        self.s3.delete_object(Bucket=self.bucket, Key=f"{self.prefix}{key}.txt")

    def connector(self):
        return connector(self.endpoint, self.bucket, prefix=self.prefix)

    def doc_id(self, key):
        return f"{key}.txt"


class TestS3Contract(ConnectorContract):
    @pytest.fixture
    def source(self, s3, endpoint, bucket):
        return BucketSource(s3, endpoint, bucket)


# -- listing -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_bucket(s3):
    """BIG_COUNT small objects under big/ (more than one 1,000-key page) and a few outside it."""
    name = new_bucket(s3)
    keys = [f"big/{i // 100:02d}/doc{i:04d}.txt" for i in range(BIG_COUNT)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=name, Key=k, Body=f"text of {k}".encode()), keys))
    for key in ("outside.txt", "bigger/not-me.txt", "big"):
        s3.put_object(Bucket=name, Key=key, Body=b"not under the prefix")
    return name, keys


def test_lists_every_object_across_pages(endpoint, big_bucket):
    name, keys = big_bucket
    conn = connector(endpoint, name, prefix="big")
    calls = []
    conn.client.meta.events.register("after-call.s3.ListObjectsV2", lambda **kw: calls.append(1))
    refs = listing(conn)
    assert set(refs) == {k.removeprefix("big/") for k in keys}
    assert len(calls) == 2  # 1,000 keys per page: the paginator really followed the continuation token
    ref = refs["07/doc0700.txt"]
    assert ref.uri == f"s3://{name}/big/07/doc0700.txt" and ref.size == len(b"text of big/07/doc0700.txt")
    assert ref.modified_at is not None and ref.modified_at.tzinfo is not None
    etag, size, modified = ref.fingerprint.split(":", 2)
    assert len(etag) == 32 and int(size) == ref.size and modified == ref.modified_at.isoformat()


def test_throughput_over_the_big_bucket(endpoint, big_bucket):
    """A measurement, not a check: printed for the notes (run with -s to see it)."""
    name, _keys = big_bucket
    conn = connector(endpoint, name, prefix="big/")
    start = time.perf_counter()
    refs = list(conn.list())
    list_s = time.perf_counter() - start
    start = time.perf_counter()
    total = sum(len(conn.fetch(ref).data) for ref in refs)
    fetch_s = time.perf_counter() - start
    assert len(refs) == BIG_COUNT and total > 0
    print(f"\nS3 against moto server: list {len(refs) / list_s:,.0f} objects/s ({list_s:.2f} s), "
          f"fetch {len(refs) / fetch_s:,.0f} objects/s sequential ({fetch_s:.2f} s, {total} bytes)")


def test_only_objects_under_the_prefix_nested_keys_and_no_folder_markers(s3, endpoint, bucket):
    for key in ("docs/a/b/c/x.txt", "docs/top.txt", "docs/über file.txt", "docs/folder/", "docs/",
                "docsextra/y.txt", "other/z.txt", "docs.txt"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"" if key.endswith("/") else f"Text of {key}".encode())
    for prefix in ("docs", "docs/", "/docs/"):
        refs = listing(connector(endpoint, bucket, prefix=prefix))
        assert set(refs) == {"a/b/c/x.txt", "top.txt", "über file.txt"}, prefix
    conn = connector(endpoint, bucket, prefix="docs")
    raw = conn.fetch(listing(conn)["a/b/c/x.txt"])
    assert raw.filename == "x.txt" and raw.data == b"Text of docs/a/b/c/x.txt"
    assert raw.metadata["key"] == "docs/a/b/c/x.txt" and raw.metadata["bucket"] == bucket
    raw = conn.fetch(listing(conn)["über file.txt"])
    assert raw.data == "Text of docs/über file.txt".encode()
    whole = listing(connector(endpoint, bucket))  # no prefix: the whole bucket, markers still skipped
    assert set(whole) == {"docs/a/b/c/x.txt", "docs/top.txt", "docs/über file.txt", "docsextra/y.txt",
                          "other/z.txt", "docs.txt"}


def test_include_exclude_and_accept_apply_to_the_relative_key(s3, endpoint, bucket):
    for key in ("a.pdf", "a.txt", "drafts/b.pdf", "x/y/c.pdf", "x/y/c.tmp"):
        s3.put_object(Bucket=bucket, Key=f"p/{key}", Body=b"x")
    refs = listing(connector(endpoint, bucket, prefix="p", include=("**/*.pdf",), exclude=("drafts/*",)))
    assert set(refs) == {"a.pdf", "x/y/c.pdf"}
    refs = listing(connector(endpoint, bucket, prefix="p", accept=lambda key: not key.endswith(".tmp")))
    assert set(refs) == {"a.pdf", "a.txt", "drafts/b.pdf", "x/y/c.pdf"}


def test_change_delete_and_a_corrupt_file(s3, endpoint, bucket):
    texts = {"a.txt": "Alpha says the tent sleeps two.", "b.txt": "Bravo says the stove runs on gas.",
             "c.md": "# Charlie\n\nCharlie says bring a map."}
    for key, text in texts.items():
        s3.put_object(Bucket=bucket, Key=key, Body=text.encode())
    garbage = b"%PDF-1.7\n\x00\x17garbage that is not a PDF at all" * 10
    s3.put_object(Bucket=bucket, Key="broken.pdf", Body=garbage)
    before = listing(connector(endpoint, bucket))
    assert set(before) == {"a.txt", "b.txt", "c.md", "broken.pdf"}

    s3.put_object(Bucket=bucket, Key="a.txt", Body=b"Alpha was rewritten: the tent sleeps three.")
    s3.delete_object(Bucket=bucket, Key="b.txt")
    conn = connector(endpoint, bucket)
    after = listing(conn)
    assert set(after) == {"a.txt", "c.md", "broken.pdf"}
    assert {d for d in after if after[d].fingerprint != before[d].fingerprint} == {"a.txt"}

    broken = conn.fetch(after["broken.pdf"])  # listed and fetched fine: the parser is what fails it
    assert broken.data == garbage
    with pytest.raises(ParseError):
        parsers.parse(broken.filename, broken.data)
    assert "sleeps three" in parsers.parse("a.txt", conn.fetch(after["a.txt"]).data).text
    assert "bring a map" in parsers.parse("c.md", conn.fetch(after["c.md"]).data).text


# -- fetch -------------------------------------------------------------------------------------


def test_oversize_objects_fail_with_the_limit(s3, endpoint, bucket):
    s3.put_object(Bucket=bucket, Key="big.txt", Body=b"x" * 100)
    s3.put_object(Bucket=bucket, Key="small.txt", Body=b"y" * 40)
    conn = connector(endpoint, bucket, max_object_bytes=50)
    refs = listing(conn)
    calls = []
    conn.client.meta.events.register("before-call.s3.GetObject", lambda **kw: calls.append(1))
    with pytest.raises(FetchError, match="100 bytes, over the limit of 50 bytes"):
        conn.fetch(refs["big.txt"])
    assert calls == []  # refused from the listed size, nothing downloaded
    with pytest.raises(FetchError, match="over the limit of 50"):  # a ref without a size: from the GET's length
        conn.fetch(DocRef(source="docs", doc_id="big.txt", fingerprint="f", uri="s3://x/big.txt"))
    s3.put_object(Bucket=bucket, Key="small.txt", Body=b"y" * 80)  # grew after listing
    with pytest.raises(FetchError, match="80 bytes, over the limit of 50"):
        conn.fetch(refs["small.txt"])


def test_an_object_deleted_after_listing(s3, endpoint, bucket):
    s3.put_object(Bucket=bucket, Key="gone.txt", Body=b"soon gone")
    conn = connector(endpoint, bucket)
    ref = listing(conn)["gone.txt"]
    s3.delete_object(Bucket=bucket, Key="gone.txt")
    with pytest.raises(FetchError, match="disappeared after listing") as err:
        conn.fetch(ref)
    assert err.value.name == "gone.txt"


def test_a_bucket_deleted_after_listing_stops_the_run(s3, endpoint, bucket):
    s3.put_object(Bucket=bucket, Key="a.txt", Body=b"a")
    conn = connector(endpoint, bucket)
    ref = listing(conn)["a.txt"]
    s3.delete_object(Bucket=bucket, Key="a.txt")
    s3.delete_bucket(Bucket=bucket)
    with pytest.raises(SourceError, match=f"bucket '{bucket}' does not exist"):
        conn.fetch(ref)


# -- source failures ---------------------------------------------------------------------------


def test_missing_bucket(endpoint):
    with pytest.raises(SourceError) as err:
        list(connector(endpoint, "no-such-bucket-here").list())
    assert err.value.source == "docs"
    assert f"bucket 'no-such-bucket-here' does not exist at {endpoint}" in err.value.reason


def test_unreachable_endpoint_after_retries():
    dead = f"http://127.0.0.1:{free_port()}"
    conn = connector(dead, "any", max_attempts=2, connect_timeout=1)
    attempts = []
    conn.client.meta.events.register("before-send.s3.ListObjectsV2", lambda **kw: attempts.append(1))
    start = time.perf_counter()
    with pytest.raises(SourceError, match=f"cannot reach {dead} after 2 attempts"):
        list(conn.list())
    assert len(attempts) == 2 and time.perf_counter() - start < 10


def _reset_auth(endpoint, count: str) -> None:
    """moto's switch for real IAM authentication: after `count` more requests, every request is checked."""
    # text/plain: urllib's default form content type makes werkzeug swallow the body (moto then answers 500)
    request = urllib.request.Request(f"{endpoint}/moto-api/reset-auth", data=count.encode(), method="POST",
                                     headers={"Content-Type": "text/plain"})
    urllib.request.urlopen(request).close()


@pytest.fixture
def iam_users(endpoint, s3, bucket):
    """Two IAM users, one without any permission and one that may list the bucket but not read it,
    then moto's authentication switched on for the test (and off again after)."""
    s3.put_object(Bucket=bucket, Key="a.txt", Body=b"secret text")
    iam = boto3.client("iam", endpoint_url=endpoint, region_name=REGION, **CREDS)
    users = {}
    for user in ("nobody", "lister"):
        iam.create_user(UserName=f"{user}-{bucket}")
        key = iam.create_access_key(UserName=f"{user}-{bucket}")["AccessKey"]
        users[user] = (key["AccessKeyId"], key["SecretAccessKey"])
    iam.put_user_policy(
        UserName=f"lister-{bucket}", PolicyName="list",
        PolicyDocument=('{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", '
                        f'"Resource": "arn:aws:s3:::{bucket}"}}]}}'),
    )
    _reset_auth(endpoint, "0")
    try:
        yield users
    finally:
        _reset_auth(endpoint, "inf")


def test_wrong_credentials_and_denied_access_on_the_real_server(endpoint, bucket, iam_users):
    unknown = connector(endpoint, bucket, access_key_id="AKIAUNKNOWNKEY000000", secret_access_key="s3cr3t-unknown")
    with pytest.raises(SourceError, match="access key id is not known") as err:
        list(unknown.list())
    assert "AKIAUNKNOWNKEY000000" not in str(err.value) and "s3cr3t-unknown" not in str(err.value)

    key_id, secret = iam_users["nobody"]
    wrong_secret = connector(endpoint, bucket, access_key_id=key_id, secret_access_key="not-" + secret)
    with pytest.raises(SourceError, match="rejected the request signature") as err:
        list(wrong_secret.list())
    assert secret not in str(err.value) and key_id not in str(err.value)

    nobody = connector(endpoint, bucket, access_key_id=key_id, secret_access_key=secret)
    with pytest.raises(SourceError, match=f"access denied listing bucket '{bucket}'.*s3:ListBucket"):
        list(nobody.list())

    lister = connector(endpoint, bucket, access_key_id=iam_users["lister"][0], secret_access_key=iam_users["lister"][1])
    ref = listing(lister)["a.txt"]
    with pytest.raises(FetchError, match="access denied reading .*s3:GetObject"):
        lister.fetch(ref)


class ThrottlingProxy:
    """An HTTP proxy to moto that answers the next `fail` requests with 503 SlowDown."""

    def __init__(self, upstream: str):
        host, port = upstream.removeprefix("http://").split(":")
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _handle(self):
                proxy.requests += 1
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if proxy.fail > 0:
                    proxy.fail -= 1
                    payload = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                conn = http.client.HTTPConnection(host, int(port), timeout=10)
                conn.request(self.command, self.path, body=body, headers=dict(self.headers.items()))
                resp = conn.getresponse()
                payload = resp.read()
                self.send_response(resp.status)
                for name, value in resp.getheaders():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)
                conn.close()

            do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _handle

        self.fail = 0
        self.requests = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(endpoint):
    p = ThrottlingProxy(endpoint)
    yield p
    p.close()


def test_throttling_is_retried_by_botocore_once_layered(s3, proxy, bucket):
    s3.put_object(Bucket=bucket, Key="a.txt", Body=b"Alpha text")
    conn = connector(proxy.url, bucket, max_attempts=3)
    assert conn.client.meta.config.retries == {"mode": "standard", "total_max_attempts": 3}

    proxy.fail, proxy.requests = 2, 0  # two SlowDowns, then moto's answer: within 3 attempts
    refs = listing(conn)
    assert set(refs) == {"a.txt"} and proxy.requests == 3

    proxy.fail, proxy.requests = 1, 0
    assert conn.fetch(refs["a.txt"]).data == b"Alpha text" and proxy.requests == 2

    proxy.fail, proxy.requests = 10, 0  # throttled throughout: exactly max_attempts requests, then a SourceError
    with pytest.raises(SourceError, match=r"still answered SlowDown \(HTTP 503\) after 3 attempts"):
        list(conn.list())
    assert proxy.requests == 3

    proxy.fail, proxy.requests = 10, 0  # in fetch too: the source is unwell, not this document
    with pytest.raises(SourceError, match="SlowDown"):
        conn.fetch(refs["a.txt"])
    assert proxy.requests == 3


# -- settings ----------------------------------------------------------------------------------


def test_settings_location_and_no_secrets_kept(endpoint):
    conn = S3Connector("legal", bucket="legal", prefix="contracts", endpoint_url=endpoint + "/",
                       access_key_id="AKIAEXAMPLE", secret_access_key="very-secret", max_attempts=4,
                       retry_mode="adaptive", connect_timeout=3, read_timeout=7)
    assert conn.kind == "s3" and conn.location == f"s3://legal/contracts/ @ {endpoint}"
    assert conn.client.meta.config.retries == {"mode": "adaptive", "total_max_attempts": 4}
    assert (conn.client.meta.config.connect_timeout, conn.client.meta.config.read_timeout) == (3, 7)
    assert "very-secret" not in repr(conn) and "very-secret" not in repr(vars(conn))
    assert S3Connector("aws", bucket="b", region=REGION, **{k[4:]: v for k, v in CREDS.items()}).location == "s3://b/"


@pytest.mark.parametrize("kwargs", [
    {"bucket": ""},
    {"bucket": "a/b"},
    {"bucket": "b", "access_key_id": "only-the-id"},
    {"bucket": "b", "secret_access_key": "only-the-secret"},
    {"bucket": "b", "endpoint_url": "127.0.0.1:9000"},
    {"bucket": "b", "max_attempts": 0},
    {"bucket": "b", "max_object_bytes": 0},
    {"bucket": "b", "retry_mode": "legacy"},
])
def test_bad_settings_are_config_errors(kwargs):
    with pytest.raises(ConfigError) as err:
        S3Connector("src", **kwargs)
    assert "only-the-" not in str(err.value)
