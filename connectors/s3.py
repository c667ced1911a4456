"""A bucket (or a prefix of one) on S3 or an S3-compatible server (MinIO, Ceph, moto) as a source.

Listing reads no bodies: one ListObjectsV2 call per 1,000 keys. An object's fingerprint is
`etag:size:last_modified`; its content hash (the document version) is computed at fetch, only
for objects whose fingerprint changed.

The prefix is a folder: "contracts" and "contracts/" both mean the keys under "contracts/",
and a document's doc_id is its key relative to that folder ("2024/lease.pdf"). Keys ending with
"/" are folder markers and are never listed. include/exclude globs and `accept` apply to the
relative key, as in the local folder connector.

Retries: botocore's own retry machinery only (standard or adaptive mode, `max_attempts` attempts
in all), which covers throttling (SlowDown, 503), 5xx answers, connection errors and timeouts.
There is no second retry layer on top.

Errors:
- `list()` yields the complete listing or raises SourceError: the pipeline deletes from the index
  every known document missing from a listing, so a partial listing must never end normally.
- `fetch()` raises FetchError for what is wrong with one object (gone since listing, over the size
  limit, archived, not readable with these credentials) and SourceError for what is wrong with the
  source as a whole (endpoint unreachable or throttling after all retries, bad credentials, bucket
  gone): the run then stops with the remaining documents still pending, instead of quarantining
  every one of them as failed.

Credentials: the usual boto3 chain unless both access_key_id and secret_access_key are given.
They are handed to a boto3 session and not kept on the connector; no message contains them.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    FlexibleChecksumError,
    NoCredentialsError,
    PaginationError,
    PartialCredentialsError,
    ReadTimeoutError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from connectors.local import wanted
from ragline.errors import ConfigError, FetchError, SourceError
from ragline.types import DocRef, RawDocument

log = logging.getLogger(__name__)

CHUNK_BYTES = 1024 * 1024

_BAD_KEY = {"InvalidAccessKeyId", "InvalidClientTokenId", "UnrecognizedClientException"}
_BAD_SECRET = {"SignatureDoesNotMatch", "IncompleteSignature"}
_EXPIRED = {"ExpiredToken", "ExpiredTokenException", "InvalidToken", "TokenRefreshRequired"}
_DENIED = {"AccessDenied", "AllAccessDisabled", "AccountProblem"}
_WRONG_REGION = {"PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException"}
_THROTTLED = {
    "SlowDown", "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled",
    "RequestThrottledException", "TooManyRequestsException", "RequestLimitExceeded",
    "ProvisionedThroughputExceededException", "ServiceUnavailable", "InternalError",
    "BandwidthLimitExceeded", "EC2ThrottledException",
}


def _error_of(exc: ClientError) -> tuple[str, int | None, str]:
    error = exc.response.get("Error", {}) or {}
    status = (exc.response.get("ResponseMetadata", {}) or {}).get("HTTPStatusCode")
    code = str(error.get("Code") or status or "unknown")
    return code, status, str(error.get("Message") or "").strip()


def _answer(code: str, status: int | None, message: str = "") -> str:
    """What the server answered, for a message: "SlowDown (HTTP 503)", or "HTTP 401 Unauthorized"
    when the body carried no S3 error code (botocore then uses the status as the code)."""
    said = f"HTTP {status}" if code == str(status) else f"{code} (HTTP {status})"
    return f"{said} {message}".rstrip()


class S3Connector:
    kind = "s3"

    def __init__(
        self,
        name: str,
        *,
        bucket: str,
        prefix: str = "",
        include: Sequence[str] = ("**/*",),
        exclude: Sequence[str] = (),
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        max_object_bytes: int = 200 * 1024 * 1024,
        accept: Callable[[str], bool] = lambda key: True,
        max_attempts: int = 5,
        retry_mode: str = "standard",
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
    ):
        if not name:
            raise ConfigError("an S3 source needs a name")
        if not bucket or "/" in bucket or bucket != bucket.strip():
            raise ConfigError(f"source {name!r}: {bucket!r} is not a bucket name (give the prefix separately)")
        if (access_key_id is None) != (secret_access_key is None) or access_key_id == "" or secret_access_key == "":
            raise ConfigError(
                f"source {name!r}: give both an access key id and a secret access key, or neither "
                "(then the usual AWS credential chain is used)"
            )
        if endpoint_url is not None and not endpoint_url.startswith(("http://", "https://")):
            raise ConfigError(f"source {name!r}: endpoint_url must start with http:// or https://")
        if max_attempts < 1:
            raise ConfigError(f"source {name!r}: max_attempts must be at least 1")
        if max_object_bytes < 1:
            raise ConfigError(f"source {name!r}: max_object_bytes must be positive")
        if retry_mode not in ("standard", "adaptive"):
            raise ConfigError(f"source {name!r}: retry_mode must be 'standard' or 'adaptive'")

        self.name = name
        self.bucket = bucket
        prefix = prefix.lstrip("/")
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self.include = tuple(include)
        self.exclude = tuple(exclude)
        self.accept = accept
        self.endpoint_url = endpoint_url.rstrip("/") if endpoint_url else None
        self.max_object_bytes = max_object_bytes
        self.max_attempts = max_attempts
        self.skipped: list[tuple[str, str]] = []  # (key, reason) of objects listing passed over

        config = Config(
            # total_max_attempts counts the first request too; botocore's "max_attempts" key would
            # mean retries, i.e. one attempt more than asked for.
            retries={"mode": retry_mode, "total_max_attempts": max_attempts},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            # S3-compatible servers on a host:port (MinIO, moto) have no per-bucket DNS names.
            s3={"addressing_style": "path"} if endpoint_url else None,
        )
        session = boto3.session.Session(
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            region_name=region,
        )
        self.client = session.client("s3", endpoint_url=self.endpoint_url, config=config)

    @property
    def location(self) -> str:
        where = f"s3://{self.bucket}/{self.prefix}"
        return f"{where} @ {self.endpoint_url}" if self.endpoint_url else where

    @property
    def _endpoint(self) -> str:
        return self.endpoint_url or self.client.meta.endpoint_url

    def __repr__(self) -> str:
        return f"S3Connector(name={self.name!r}, location={self.location!r})"

    # -- listing ----------------------------------------------------------------------------

    def list(self) -> Iterator[DocRef]:
        self.skipped.clear()
        paginator = self.client.get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=self.bucket, Prefix=self.prefix)
        try:
            for page in pages:
                for obj in page.get("Contents", ()):
                    ref = self._ref(obj)
                    if ref is not None:
                        yield ref
        except (ClientError, BotoCoreError) as exc:
            raise SourceError(self.name, self._source_reason(exc, "listing")) from None

    def _ref(self, obj: dict[str, Any]) -> DocRef | None:
        key: str = obj["Key"]
        if key.endswith("/") or not key.startswith(self.prefix):
            return None
        rel = key[len(self.prefix):]
        if not wanted(rel, self.include, self.exclude, self.accept):
            return None
        etag = str(obj.get("ETag", "")).strip('"')
        size = int(obj.get("Size", 0))
        modified = obj.get("LastModified")
        return DocRef(
            source=self.name,
            doc_id=rel,
            fingerprint=f"{etag}:{size}:{modified.isoformat() if modified else ''}",
            uri=f"s3://{self.bucket}/{key}",
            size=size,
            modified_at=modified,
        )

    def _source_reason(self, exc: ClientError | BotoCoreError, doing: str) -> str:
        """A reason for SourceError, written for whoever fixes the settings. Never echoes credentials."""
        bucket, endpoint = self.bucket, self._endpoint
        if isinstance(exc, ClientError):
            code, status, message = _error_of(exc)
            if code == "NoSuchBucket":
                return f"bucket {bucket!r} does not exist at {endpoint}: check the bucket name and the endpoint/region"
            if code in _BAD_KEY:
                return (f"the access key id is not known to {endpoint} ({code}): check the access key "
                        "configured for this source")
            if code in _BAD_SECRET:
                return (f"{endpoint} rejected the request signature ({code}): check that the secret access key "
                        "belongs to the access key id")
            if code in _EXPIRED:
                return f"the credentials have expired or are invalid ({code}): refresh them"
            if code == "RequestTimeTooSkewed":
                return f"this machine's clock is too far from {endpoint}'s ({code}): fix the clock"
            if code in _WRONG_REGION or status == 301:
                return (f"bucket {bucket!r} is not in the configured region ({code}): set the source's region "
                        "to the bucket's region")
            if code in _DENIED or status == 403:
                return (f"access denied {doing} bucket {bucket!r} at {endpoint} ({code}): the credentials need "
                        f"s3:ListBucket on arn:aws:s3:::{bucket} and s3:GetObject on its objects")
            if status == 401:  # not AWS's way (it answers 403), but S3-compatible servers and proxies do
                return (f"{endpoint} refused the credentials ({_answer(code, status, message)}): check the "
                        "access key and secret configured for this source")
            if code in _THROTTLED or (status is not None and status >= 500):
                return (f"{endpoint} still answered {_answer(code, status)} after {self.max_attempts} attempts "
                        f"while {doing}: the server is throttling or unavailable; try again later")
            return f"{doing} bucket {bucket!r} at {endpoint} failed: {_answer(code, status, message)}"
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            return ("no usable AWS credentials: set the source's access key settings or configure the AWS "
                    "credential chain (environment, ~/.aws, instance role)")
        if isinstance(exc, BotoConnectionError):  # EndpointConnectionError, timeouts, closed connections
            return (f"cannot reach {endpoint} after {self.max_attempts} attempts while {doing} "
                    f"({type(exc).__name__}): check the endpoint URL and that the server is up")
        if isinstance(exc, PaginationError):
            return f"{endpoint} returned an inconsistent listing (a repeated continuation token): {exc}"
        return f"{doing} bucket {bucket!r} at {endpoint} failed: {type(exc).__name__}: {exc}"

    # -- fetch ------------------------------------------------------------------------------

    def fetch(self, ref: DocRef) -> RawDocument:
        key = self.prefix + ref.doc_id
        limit = self.max_object_bytes
        if ref.size is not None and ref.size > limit:
            raise FetchError(ref.doc_id, self._too_big(ref.size))
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            self._fetch_failed(ref, exc)
        except BotoCoreError as exc:
            raise SourceError(self.name, self._source_reason(exc, f"fetching {key!r} from")) from None

        body = response["Body"]
        try:
            length = response.get("ContentLength")
            if length is not None and length > limit:  # grew since listing, or a ref without a size
                raise FetchError(ref.doc_id, self._too_big(length))
            digest = hashlib.sha256()
            data = bytearray()
            for chunk in body.iter_chunks(CHUNK_BYTES):
                data += chunk
                if len(data) > limit:
                    raise FetchError(ref.doc_id, self._too_big(None))
                digest.update(chunk)
        except FlexibleChecksumError:
            raise FetchError(ref.doc_id, "the downloaded bytes do not match the object's checksum") from None
        except (BotoCoreError, OSError) as exc:
            reason = f"the connection broke while reading {key!r} ({type(exc).__name__})"
            if isinstance(exc, ReadTimeoutError):
                reason = f"reading {key!r} timed out"
            raise SourceError(self.name, f"{reason} from {self._endpoint}; the document stays pending for the next run") from None
        finally:
            body.close()

        return RawDocument(
            ref=ref,
            data=bytes(data),
            filename=key.rsplit("/", 1)[-1],
            content_hash=digest.hexdigest(),
            metadata={
                "bucket": self.bucket,
                "key": key,
                "etag": str(response.get("ETag", "")).strip('"'),
                "content_type": response.get("ContentType"),
            },
        )

    def _too_big(self, size: int | None) -> str:
        what = f"object is {size} bytes" if size is not None else "object is larger than announced and"
        return f"{what}, over the limit of {self.max_object_bytes} bytes (max_object_bytes)"

    def _fetch_failed(self, ref: DocRef, exc: ClientError) -> NoReturn:
        code, status, message = _error_of(exc)
        key = self.prefix + ref.doc_id
        if code in ("NoSuchKey", "404") or (status == 404 and code != "NoSuchBucket"):
            raise FetchError(ref.doc_id, "object disappeared after listing") from None
        if code == "InvalidObjectState":
            raise FetchError(ref.doc_id, "object is archived (Glacier/Deep Archive): restore it to index it") from None
        if code in _DENIED or (status == 403 and code not in _BAD_KEY | _BAD_SECRET | _EXPIRED):
            raise FetchError(
                ref.doc_id, f"access denied reading s3://{self.bucket}/{key}: the credentials need s3:GetObject on it"
            ) from None
        if code in ("InvalidRange", "PreconditionFailed", "InvalidRequest") or status in (400, 412, 416):
            raise FetchError(ref.doc_id, f"cannot read the object: {_answer(code, status, message)}") from None
        # Bad credentials, bucket gone, throttling or 5xx after every retry: the source, not this object.
        raise SourceError(self.name, self._source_reason(exc, f"fetching {key!r} from")) from None
