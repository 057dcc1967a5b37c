"""S3 I/O for the tasks: a client from the standard AWS environment, a streaming multipart writer,
a streaming reader, metadata/tag helpers, and one-line errors that name the bucket and endpoint.

The endpoint comes from `AWS_ENDPOINT_URL` (boto3 >= 1.34 reads it itself), so MinIO, moto and
any S3-compatible store work without code changes.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
)

from automation.errors import OpsError, TaskFailed, UserInputError
from automation.tasks.io import urls

PART_SIZE = 8 * 1024 * 1024
MAX_SINGLE_COPY = 5 * 1024**3  # CopyObject's limit; above it, copy in parts
COPY_PART_SIZE = 512 * 1024 * 1024
READ_CHUNK = 1024 * 1024

_MISSING_BUCKET = {"NoSuchBucket"}
_DENIED = {
    "AccessDenied",
    "403",
    "Forbidden",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AllAccessDisabled",
}
_MISSING_KEY = {"NoSuchKey", "404", "NotFound"}


def s3_client(endpoint: str | None = None, region: str | None = None) -> Any:
    """An S3 client from the standard AWS environment (endpoint, region, credentials, IRSA);
    `endpoint`/`region`, when given (a stack's `ops` output), take their place.

    Few retries and short connect timeouts: a CronJob should fail fast and clearly, not hang.
    """
    config = Config(
        connect_timeout=10,
        read_timeout=120,
        retries={"max_attempts": 3, "mode": "standard"},
        s3={"addressing_style": os.environ.get("OPSPLANE_S3_ADDRESSING_STYLE", "path")},
        # the tasks hash every byte with sha256 themselves; skip botocore's extra CRC32 pass
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not endpoint:
        urls.s3_endpoint()  # a malformed AWS_ENDPOINT_URL is one line, not boto3's traceback
    try:
        return boto3.client(
            "s3", region_name=region or "us-east-1", endpoint_url=endpoint or None, config=config
        )
    except ValueError as exc:
        raise UserInputError(f"S3 client: {exc} (check AWS_REGION and AWS_ENDPOINT_URL)") from None


def endpoint_of(client: Any) -> str:
    return str(client.meta.endpoint_url)


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def explain(
    exc: Exception, client: Any, bucket: str, key: str | None = None, option: str = "--bucket"
) -> OpsError:
    """One line naming bucket, endpoint and the fix (`option` names the bucket's flag)."""
    endpoint = endpoint_of(client)
    if isinstance(exc, ParamValidationError) and "bucket" in str(exc).lower():
        return urls_error(bucket, option)
    where = f"s3://{bucket}/{key}" if key else f"bucket {bucket!r}"
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError | ReadTimeoutError):
        return TaskFailed(
            f"S3 endpoint {endpoint} is unreachable ({type(exc).__name__}) while accessing "
            f"{where}: check AWS_ENDPOINT_URL and the network"
        )
    if isinstance(exc, NoCredentialsError):
        return UserInputError(
            f"no S3 credentials for {where} at {endpoint}: set AWS_ACCESS_KEY_ID/"
            "AWS_SECRET_ACCESS_KEY or run with the backup IAM role"
        )
    if isinstance(exc, ClientError):
        code = error_code(exc)
        if code in _MISSING_BUCKET or (code in _MISSING_KEY and key is None):
            return TaskFailed(
                f"bucket {bucket!r} does not exist at {endpoint}: create it or fix {option}"
            )
        if code in _DENIED:
            return TaskFailed(
                f"access denied to {where} at {endpoint} ({code}): check the credentials and "
                "that the IAM policy allows this bucket and prefix"
            )
        if code in _MISSING_KEY:
            return TaskFailed(f"no object {where} at {endpoint}: check --key (see `backups list`)")
        if code == "InvalidRange":  # a ranged read of a 0-byte object
            return UserInputError(
                f"{where} is empty (0 bytes): not a backup; pick another --key (see `backups list`)"
            )
        return TaskFailed(f"S3 error on {where} at {endpoint}: {code or exc}")
    return TaskFailed(f"S3 error on {where} at {endpoint}: {type(exc).__name__}: {exc}")


@contextmanager
def s3_errors(
    client: Any, bucket: str, key: str | None = None, option: str = "--bucket"
) -> Iterator[None]:
    """Translate botocore failures inside the block into one-line task errors."""
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise explain(exc, client, bucket, key, option) from None


def urls_error(bucket: str, option: str) -> UserInputError:
    try:
        urls.bucket_name(bucket, option)
    except UserInputError as exc:
        return exc
    return UserInputError(f"{option} {bucket!r}: rejected by the S3 client as a bucket name")


def check_bucket(client: Any, bucket: str, prefix: str = "", option: str = "--bucket") -> None:
    """Fail early and clearly when the bucket is missing, forbidden or the endpoint is down.

    Lists one key under `prefix` rather than HeadBucket: a backup role scoped to its prefix
    (an `s3:prefix` condition on ListBucket) may list there but may not HeadBucket.
    """
    urls.bucket_name(bucket, option)
    with s3_errors(client, bucket, option=option):
        client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)


@dataclass
class Stored:
    """What a finished upload stored: the object's key, sha256 and size."""

    key: str
    sha256: str
    size: int


class MultipartUpload:
    """A write-only, file-like S3 object: ~fixed-size parts, bounded memory, sha256 on the fly.

    At most `max_in_flight` parts upload concurrently while the caller keeps writing, so memory
    is bounded by about `(max_in_flight + 2) * part_size` (pending bytes, their join, parts in
    flight). Any error aborts the upload: S3 keeps no half-written object and no dangling
    multipart upload.
    """

    def __init__(
        self,
        client: Any,
        bucket: str,
        key: str,
        *,
        part_size: int = PART_SIZE,
        max_in_flight: int = 2,
        content_type: str = "application/octet-stream",
        tagging: str | None = None,
    ) -> None:
        self.client, self.bucket, self.key = client, bucket, key
        self.part_size = part_size
        self.max_in_flight = max_in_flight
        self._sha = hashlib.sha256()
        self._size = 0
        self._pending: list[bytes] = []  # written since the last part; joined once per part
        self._pending_size = 0
        self._parts: list[Future[dict[str, Any]]] = []
        self._in_flight: list[Future[dict[str, Any]]] = []
        self._pool = ThreadPoolExecutor(max_workers=max_in_flight, thread_name_prefix="s3-part")
        self._closed = False
        with s3_errors(client, bucket, key):
            extra = {"Tagging": tagging} if tagging else {}
            created = client.create_multipart_upload(
                Bucket=bucket, Key=key, ContentType=content_type, **extra
            )
        self.upload_id: str = created["UploadId"]

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._closed:
            raise ValueError("write to a finished upload")
        self._sha.update(data)
        self._size += len(data)
        self._pending.append(bytes(data))
        self._pending_size += len(data)
        if self._pending_size >= self.part_size:
            self._send_pending()
        return len(data)

    def _send_pending(self) -> None:
        """One part of everything pending: parts may exceed `part_size` by one write, which
        S3 allows, and saves splitting (one copy per part instead of three)."""
        chunk = b"".join(self._pending)
        self._pending, self._pending_size = [], 0
        self._send(chunk)

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        """Parts are sent when full; nothing to do (file-like API)."""

    def _send(self, chunk: bytes) -> None:
        self._wait_for_slot()
        number = len(self._parts) + 1
        future = self._pool.submit(self._upload_part, number, chunk)
        self._parts.append(future)
        self._in_flight.append(future)

    def _wait_for_slot(self) -> None:
        """Block until fewer than `max_in_flight` parts are uploading; a failed part's error is
        raised here, in the writer's thread."""
        while True:
            for future in [f for f in self._in_flight if f.done()]:
                self._in_flight.remove(future)
                future.result()
            if len(self._in_flight) < self.max_in_flight:
                return
            wait(self._in_flight, return_when=FIRST_COMPLETED)

    def _upload_part(self, number: int, chunk: bytes) -> dict[str, Any]:
        with s3_errors(self.client, self.bucket, self.key):
            response = self.client.upload_part(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                PartNumber=number,
                Body=chunk,
            )
        return {"PartNumber": number, "ETag": response["ETag"]}

    def complete(self) -> Stored:
        """Send the last part, finish the upload, and return what was stored."""
        if self._pending_size or not self._parts:
            self._send_pending()
        parts = [f.result() for f in self._parts]
        with s3_errors(self.client, self.bucket, self.key):
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": parts},
            )
        self._finish()
        return Stored(key=self.key, sha256=self._sha.hexdigest(), size=self._size)

    def abort(self) -> None:
        """Drop every uploaded part. Safe to call twice or after a failed complete."""
        if self._closed:
            return
        self._finish()
        # if this fails too, the bucket's abort-incomplete-multipart lifecycle rule is the backstop
        with suppress(ClientError, BotoCoreError):
            self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=self.key, UploadId=self.upload_id
            )

    def _finish(self) -> None:
        self._closed = True
        self._pending, self._pending_size = [], 0
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> MultipartUpload:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self.abort()
        elif not self._closed:
            self.abort()  # leaving the block without complete() stores nothing


def iter_object(
    client: Any, bucket: str, key: str, chunk_size: int = READ_CHUNK
) -> Iterator[bytes]:
    """The object's bytes, streamed in chunks (never the whole object in memory)."""
    with s3_errors(client, bucket, key):
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
        try:
            yield from body.iter_chunks(chunk_size)
        finally:
            body.close()


def head(client: Any, bucket: str, key: str) -> dict[str, Any]:
    with s3_errors(client, bucket, key):
        response: dict[str, Any] = client.head_object(Bucket=bucket, Key=key)
        return response


def put_bytes(client: Any, bucket: str, key: str, body: bytes, **extra: Any) -> None:
    with s3_errors(client, bucket, key):
        client.put_object(Bucket=bucket, Key=key, Body=body, **extra)


def get_bytes(client: Any, bucket: str, key: str) -> bytes:
    with s3_errors(client, bucket, key):
        body: bytes = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        return body


def replace_metadata(
    client: Any, bucket: str, key: str, metadata: dict[str, str], size: int, content_type: str
) -> None:
    """Set user metadata on a stored object by copying it onto itself (REPLACE).

    The sha256 is only known once the upload has ended, so metadata is set afterwards. Objects
    over 5 GB cannot be copied in one request; they are copied in parts (UploadPartCopy).
    """
    with s3_errors(client, bucket, key):
        if size <= MAX_SINGLE_COPY:
            client.copy_object(
                Bucket=bucket,
                Key=key,
                CopySource={"Bucket": bucket, "Key": key},
                Metadata=metadata,
                MetadataDirective="REPLACE",
                ContentType=content_type,
            )
        else:
            _multipart_copy_onto_itself(client, bucket, key, metadata, size, content_type)


def _multipart_copy_onto_itself(
    client: Any, bucket: str, key: str, metadata: dict[str, str], size: int, content_type: str
) -> None:
    upload_id = client.create_multipart_upload(
        Bucket=bucket, Key=key, Metadata=metadata, ContentType=content_type
    )["UploadId"]
    try:
        parts = []
        for number, start in enumerate(range(0, size, COPY_PART_SIZE), start=1):
            end = min(start + COPY_PART_SIZE, size) - 1
            response = client.upload_part_copy(
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                CopySource={"Bucket": bucket, "Key": key},
                CopySourceRange=f"bytes={start}-{end}",
            )
            parts.append({"PartNumber": number, "ETag": response["CopyPartResult"]["ETag"]})
        client.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
    except BaseException:
        client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        raise


def get_tags(client: Any, bucket: str, key: str) -> dict[str, str]:
    with s3_errors(client, bucket, key):
        tag_set = client.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
    return {t["Key"]: t["Value"] for t in tag_set}


def put_tags(client: Any, bucket: str, key: str, tags: dict[str, str]) -> None:
    with s3_errors(client, bucket, key):
        client.put_object_tagging(
            Bucket=bucket,
            Key=key,
            Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in sorted(tags.items())]},
        )


def merge_tags(client: Any, bucket: str, key: str, changes: dict[str, str]) -> dict[str, str]:
    """Update some tags, keeping the others (S3 replaces the whole tag set on every put)."""
    tags = get_tags(client, bucket, key) | changes
    put_tags(client, bucket, key, tags)
    return tags


def list_keys(client: Any, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    """Every object under `prefix` (paginated): dicts with Key, Size, LastModified."""
    with s3_errors(client, bucket):
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            yield from page.get("Contents", [])


def in_progress_uploads(client: Any, bucket: str, prefix: str = "") -> list[dict[str, Any]]:
    """Multipart uploads started and neither completed nor aborted (tests and diagnostics)."""
    with s3_errors(client, bucket):
        uploads: list[dict[str, Any]] = client.list_multipart_uploads(
            Bucket=bucket, Prefix=prefix
        ).get("Uploads", [])
        return uploads


def upload_stream(
    client: Any,
    bucket: str,
    key: str,
    chunks: Iterable[bytes],
    *,
    metadata: dict[str, str],
    tags: dict[str, str],
    content_type: str = "application/octet-stream",
) -> Stored:
    """Stream `chunks` into one object, then set its metadata (with sha256 and size) and tags.

    The object is tagged from the start, so even an orphan left by a crash falls under the
    lifecycle rules; if anything fails after the upload completed, the object is deleted again.
    """
    tagging = "&".join(f"{quote(k)}={quote(v)}" for k, v in sorted(tags.items()))
    with MultipartUpload(client, bucket, key, content_type=content_type, tagging=tagging) as upload:
        for chunk in chunks:
            upload.write(chunk)
        stored = upload.complete()
    try:
        full = metadata | {"sha256": stored.sha256, "size": str(stored.size)}
        replace_metadata(client, bucket, key, full, stored.size, content_type)
        put_tags(client, bucket, key, tags)
    except BaseException:
        delete_quietly(client, bucket, [key])
        raise
    return stored


def delete_quietly(client: Any, bucket: str, keys: list[str]) -> None:
    """Best-effort cleanup after a failure (the original error is what the user needs to see)."""
    for start in range(0, len(keys), 1000):
        batch = [{"Key": k} for k in keys[start : start + 1000]]
        with suppress(ClientError, BotoCoreError):
            client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})


def gzip_chunks(chunks: Iterable[bytes], level: int = 6) -> Iterator[bytes]:
    """gzip-compress a stream (zlib releases the GIL, so uploads proceed while it compresses)."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
    for chunk in chunks:
        out = compressor.compress(chunk)
        if out:
            yield out
    yield compressor.flush()
