"""Read log objects under S3 prefixes, where ALB, WAF and Cloudflare deliver logs.

Each run lists the prefix, skips the objects already read to their end and
streams the others in chunks of whole lines through the same parsing as
files. Every chunk commits its events, rejects and the object's new offset
(table ``s3_objects``) in one transaction, so a crash mid-object resumes at
the last committed chunk. An object is known by bucket and key, and its
version by ETag and size. An object whose ETag or size changed is read again
from the start.

gzip and zstd objects are recognised by their first bytes rather than the
key, because Firehose writes gzip objects without a suffix.

S3 objects do not change once written, so reading an object again cannot
mend it. An empty object is recorded as complete without a request. A
compressed object that is damaged (truncated or corrupt) keeps what could
be read before the damage, gets one reject row that names the damage, and
is recorded as complete, so only a new upload (new ETag) is read again.
"""

from __future__ import annotations

import gzip
import logging
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import polars as pl
import zstandard

from gatewatch.config import S3_SCHEME, S3Options
from gatewatch.connectors.base import REJECT_SCHEMA, Connector
from gatewatch.detect import SAMPLE_LINES, read_first_lines_from
from gatewatch.errors import SourceError
from gatewatch.ingest import (
    CHUNK_BYTES,
    OVERSIZE_SHOWN_BYTES,
    Chunk,
    FileReport,
    FormatChooser,
    SourceReport,
    add_lineage,
    commit_chunk,
    complete_records,
    iter_chunks,
    open_zstd,
)
from gatewatch.store import Store, utc_now

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# Seconds to wait for the endpoint to accept a connection and to send data.
CONNECT_TIMEOUT = 10
READ_TIMEOUT = 60
# Errors of gzip and zstd when the compressed data is truncated or corrupt.
DAMAGE_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error, zstandard.ZstdError)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> S3Location:
        """Split ``s3://bucket/prefix/`` into bucket and prefix; raise SourceError without a bucket."""
        if not url.startswith(S3_SCHEME):
            raise SourceError(f"{url!r} is not an S3 location; write s3://bucket/prefix/")
        bucket, _, prefix = url[len(S3_SCHEME) :].partition("/")
        if not bucket:
            raise SourceError(f"{url!r} names no bucket; write s3://bucket/prefix/")
        return cls(bucket, prefix)

    def url(self, key: str) -> str:
        return f"{S3_SCHEME}{self.bucket}/{key}"


@dataclass
class ObjectState:
    """The stored checkpoint of one S3 object."""

    etag: str
    size: int
    offset: int
    complete: bool
    format: str | None


def make_client(options: S3Options | None) -> Any:
    """Create a boto3 S3 client from the source's options and the standard AWS credential chain."""
    import boto3
    from botocore.config import Config as BotoConfig

    options = options or S3Options()
    session = boto3.session.Session(profile_name=options.profile, region_name=options.region)
    config = BotoConfig(
        s3={"addressing_style": options.addressing_style},
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
    )
    return session.client("s3", endpoint_url=options.endpoint_url, config=config)


def ingest_s3_source(
    store: Store,
    source: str,
    format_name: str,
    connector: Connector | FormatChooser,
    urls: list[str],
    options: S3Options | None = None,
    chunk_bytes: int = CHUNK_BYTES,
    client: Any = None,
) -> SourceReport:
    """Ingest every new object under the source's S3 prefixes.

    A listing that fails (no such bucket, no credentials, endpoint down)
    raises SourceError. An object that fails is reported in the result,
    and the other objects are still read.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    options = options or S3Options()
    client = client if client is not None else _call(lambda: make_client(options), source, "creating the S3 client")
    report = SourceReport(source=source)
    for url in urls:
        location = S3Location.parse(url)
        states = load_states(store, source, location.bucket)
        settled = load_settled(store, source, location.bucket) if options.settled_after is not None else None
        listing = _call(lambda: list_objects(client, location, options.start_after, settled), source, f"listing {url}")
        unread: set[str] = set()
        for listed in pending_objects(listing.objects, states):
            key = listed["Key"]
            try:
                object_report = ingest_object(
                    store, source, format_name, connector, client, location, listed, states.get(key), chunk_bytes
                )
                report.files.append(object_report)
                if object_report.damage is not None:
                    # Reported on this run only: the object is recorded as complete.
                    # Keeping it out of settling for this run delays its folder by one run.
                    unread.add(key)
                    report.errors.append(SourceError(object_report.damage, location.url(key)))
            except (BotoCoreError, ClientError, OSError, EOFError, zstandard.ZstdError) as exc:
                # Chunks before the fault are committed; the next run resumes there.
                unread.add(key)
                report.errors.append(SourceError(f"reading the object failed: {_describe(exc)}", location.url(key)))
            except SourceError as exc:
                unread.add(key)
                report.errors.append(exc)
        if options.settled_after is not None:
            settle_leaf_folders(store, source, location.bucket, listing, unread, utc_now() - options.settled_after)
    return report


def _call(action: Any, source: str, step: str) -> Any:
    """Run a boto3 call and raise its failure as a SourceError that names what to check."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    try:
        return action()
    except NoCredentialsError:
        raise SourceError(
            f"source {source!r}: no AWS credentials found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            "AWS_PROFILE, or `s3.profile` in the source"
        ) from None
    except (BotoCoreError, ClientError) as exc:
        raise SourceError(
            f"source {source!r}: {step} failed: {_describe(exc)}; check the bucket, the prefix, "
            "`s3.region`, `s3.endpoint_url` and the credentials' s3:ListBucket permission"
        ) from None


def _describe(exc: Exception) -> str:
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'error')}: {error.get('Message', '')}".rstrip(": ")
    return f"{type(exc).__name__}: {exc}"


def load_states(store: Store, source: str, bucket: str) -> dict[str, ObjectState]:
    """Return the stored checkpoints of the source's objects in ``bucket``, by key."""
    rows = store.con.execute(
        'SELECT key, etag, size, "offset", complete, format FROM s3_objects WHERE source = ? AND bucket = ?',
        [source, bucket],
    ).fetchall()
    return {key: ObjectState(etag, size, offset, complete, fmt) for key, etag, size, offset, complete, fmt in rows}


@dataclass
class Listing:
    """The objects found under a prefix in one run."""

    objects: list[dict[str, Any]]
    # Folders walked that have no subfolder; empty for a flat listing.
    leaf_folders: list[str]


def list_pending(
    client: Any, location: S3Location, states: dict[str, ObjectState], start_after: str | None = None
) -> list[dict[str, Any]]:
    """List the objects under the prefix that are new, changed or not read to their end."""
    return pending_objects(list_objects(client, location, start_after).objects, states)


def pending_objects(objects: list[dict[str, Any]], states: dict[str, ObjectState]) -> list[dict[str, Any]]:
    """Return the listed objects that are new, changed or not read to their end.

    The result is sorted by last-modified time, then key, so that logs are
    read roughly in time order. Folder markers (keys ending in ``/``) are skipped.
    """
    pending = []
    for listed in objects:
        key = listed["Key"]
        if key.endswith("/"):
            continue
        state = states.get(key)
        if state is not None and state.complete and (state.etag, state.size) == (listed["ETag"], listed["Size"]):
            continue
        pending.append(listed)
    return sorted(pending, key=lambda listed: (listed["LastModified"], listed["Key"]))


def list_objects(
    client: Any, location: S3Location, start_after: str | None = None, settled: set[str] | None = None
) -> Listing:
    """List the objects under the prefix.

    Without ``settled`` this is one flat listing: a run costs one request
    per 1,000 objects kept under the prefix. With ``settled`` (a set of leaf
    folders), folders are walked one level at a time and the settled ones
    are not listed, so a run costs about one request per folder not yet settled.
    """
    if settled is None:
        return Listing(list(_list_page_objects(client, location.bucket, location.prefix, start_after)), [])
    listing = Listing([], [])
    _walk(client, location.bucket, location.prefix, start_after, settled, listing, is_root=True)
    return listing


def _list_page_objects(client: Any, bucket: str, prefix: str, start_after: str | None) -> Iterator[dict[str, Any]]:
    arguments = {"Bucket": bucket, "Prefix": prefix}
    if start_after:
        arguments["StartAfter"] = start_after
    for page in client.get_paginator("list_objects_v2").paginate(**arguments):
        yield from page.get("Contents", [])


def _walk(
    client: Any, bucket: str, prefix: str, start_after: str | None, settled: set[str], listing: Listing, is_root: bool
) -> None:
    arguments = {"Bucket": bucket, "Prefix": prefix, "Delimiter": "/"}
    if start_after:
        arguments["StartAfter"] = start_after
    subfolders = []
    for page in client.get_paginator("list_objects_v2").paginate(**arguments):
        listing.objects.extend(page.get("Contents", []))
        subfolders.extend(common["Prefix"] for common in page.get("CommonPrefixes", []))
    if not subfolders and not is_root:
        listing.leaf_folders.append(prefix)
    for folder in subfolders:
        if folder not in settled:
            _walk(client, bucket, folder, start_after, settled, listing, is_root=False)


def load_settled(store: Store, source: str, bucket: str) -> set[str]:
    """Return the leaf folders of the source in ``bucket`` that are no longer listed."""
    rows = store.con.execute(
        "SELECT prefix FROM s3_settled_prefixes WHERE source = ? AND bucket = ?", [source, bucket]
    ).fetchall()
    return {row[0] for row in rows}


def settle_leaf_folders(
    store: Store, source: str, bucket: str, listing: Listing, unread: set[str], older_than: datetime
) -> list[str]:
    """Record the leaf folders whose objects are all read and whose newest object is older than ``older_than``.

    Later runs do not list them, so an object added to such a folder
    afterwards is never read. Returns the folders settled now.
    """
    newest: dict[str, datetime] = {}
    blocked: set[str] = set()
    leaves = set(listing.leaf_folders)
    for listed in listing.objects:
        key = listed["Key"]
        folder = key[: key.rfind("/") + 1]
        if folder not in leaves or key.endswith("/"):
            continue
        if key in unread:
            blocked.add(folder)
        modified = _naive_utc(listed["LastModified"])
        newest[folder] = max(newest.get(folder, modified), modified)
    settled_now = sorted(
        folder for folder, modified in newest.items() if folder not in blocked and modified <= older_than
    )
    if settled_now:
        with store.transaction():
            for folder in settled_now:
                store.con.execute(
                    "INSERT INTO s3_settled_prefixes VALUES (?, ?, ?, ?, ?)",
                    [source, bucket, folder, newest[folder], utc_now()],
                )
    return settled_now


def ingest_object(
    store: Store,
    source: str,
    format_name: str,
    connector: Connector | FormatChooser,
    client: Any,
    location: S3Location,
    listed: dict[str, Any],
    state: ObjectState | None,
    chunk_bytes: int = CHUNK_BYTES,
) -> FileReport:
    """Read one object from its stored offset to its end, one transaction per chunk.

    An empty object, and the rest of a damaged compressed object, are
    recorded as complete in the last transaction (see the module docstring).
    """
    key = listed["Key"]
    url = location.url(key)
    version = _Version(listed["ETag"], listed["Size"], _naive_utc(listed.get("LastModified")))
    report = ObjectReport(path=url)
    if state is not None and (state.etag, state.size) != (version.etag, version.size):
        logger.warning(
            "%s was replaced (ETag %s, %d bytes -> ETag %s, %d bytes); reading the new version from the start. "
            "Events of the earlier version stay in the store",
            url, state.etag, state.size, version.etag, version.size,
        )
        state = None
    start = state.offset if state is not None else 0
    opener = _ObjectOpener(client, location.bucket, key, version.etag)
    remembered = state.format if state is not None else None

    def save(end_offset: int, complete: bool = False) -> None:
        save_object_state(store, source, location.bucket, key, version, end_offset, complete, remembered)

    if version.size == 0:
        with store.transaction():
            save(0, complete=True)
        return report

    if not isinstance(connector, Connector):
        chosen = connector.remembered_connector(url, remembered)
        if chosen is not None:
            format_name, connector = remembered, chosen
        else:
            with opener.open_content(0) as sample_stream:
                sample = read_first_lines_from(sample_stream.handle, SAMPLE_LINES)
            if sample.height == 0 and sample_stream.content_read() == 0:
                # Compressed content that is empty, or damaged before its first byte: no line will ever come.
                _finish_object(store, source, format_name, url, report, sample_stream.damage(), 0, save)
                return report
            format_name, connector, report.format_note = connector.choose_from_sample(url, sample)
            remembered = format_name
        report.chosen_format = format_name

    position = start
    cut_line = None
    with opener.open_content(start) as stream:
        held = None
        for chunk in iter_chunks(stream.handle, start, chunk_bytes, finished=True, mid_line=stream.mid_line):
            if stream.damage() is not None:
                # The content ended at the damage, so this is the last chunk: its line without a newline was cut short.
                chunk, cut_line = _split_cut_line(chunk)
            ready, held = complete_records(connector, held, chunk)
            for part in ready:
                commit_chunk(store, source, format_name, connector, url, part, report, save)
                position = part.end
        if held is not None:
            # An object is finished: its last record stays as written.
            commit_chunk(store, source, format_name, connector, url, held, report, save)
            position = held.end
    _finish_object(store, source, format_name, url, report, stream.damage(), position, save, cut_line)
    return report


def _split_cut_line(chunk: Chunk) -> tuple[Chunk, Chunk | None]:
    """Split the last line off a chunk when it has no newline; return the whole lines and that line."""
    if chunk.skipped is not None or chunk.data.endswith(b"\n"):
        return chunk, None
    cut = chunk.data.rfind(b"\n") + 1
    return Chunk(chunk.offset, chunk.data[:cut]), Chunk(chunk.offset + cut, chunk.data[cut:])


def _finish_object(
    store: Store,
    source: str,
    format_name: str,
    url: str,
    report: ObjectReport,
    damage: tuple[Exception, int] | None,
    position: int,
    save: Any,
    cut_line: Chunk | None = None,
) -> None:
    """Record the object as complete, with a reject row for the damage if its compressed data is damaged.

    The reject row keeps the start of the line cut short by the damage, if any.
    """
    with store.transaction():
        if damage is not None:
            error, content_bytes = damage
            report.damage = (
                f"compressed object is damaged: {type(error).__name__}: {error}; "
                f"{content_bytes} bytes read before the damage"
            )
            offset, text = content_bytes, ""
            if cut_line is not None and cut_line.data:
                offset = cut_line.offset
                text = cut_line.data[:OVERSIZE_SHOWN_BYTES].decode("utf-8", "backslashreplace")
                report.damage += f", the last {len(cut_line.data)} of them a line cut short and not parsed"
            reject = pl.DataFrame({"offset": [offset], "line": [text], "reason": [report.damage]}, schema=REJECT_SCHEMA)
            store.insert_frame("rejects", add_lineage(reject, source, format_name, url))
            report.rejects += 1
        save(position, complete=True)


@dataclass
class ObjectReport(FileReport):
    """The result of reading one S3 object."""

    # The reject reason when the compressed object is damaged, else None.
    damage: str | None = None


@dataclass(frozen=True)
class _Version:
    etag: str
    size: int
    last_modified: datetime | None


def _naive_utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(timezone.utc).replace(tzinfo=None)


def save_object_state(
    store: Store,
    source: str,
    bucket: str,
    key: str,
    version: _Version,
    offset: int,
    complete: bool,
    format_name: str | None,
) -> None:
    """Write an object's checkpoint; call inside the transaction of the data it covers."""
    store.con.execute("DELETE FROM s3_objects WHERE source = ? AND bucket = ? AND key = ?", [source, bucket, key])
    store.con.execute(
        'INSERT INTO s3_objects (source, bucket, key, etag, size, last_modified, "offset", complete, format, '
        "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [source, bucket, key, version.etag, version.size, version.last_modified, offset, complete, format_name, utc_now()],
    )


@dataclass
class _ContentStream:
    """The content of an object from some offset on, decompressed."""

    handle: Any
    # True when the offset lies inside a line (after a skipped over-long line).
    mid_line: bool
    body: Any

    def damage(self) -> tuple[Exception, int] | None:
        """Return the decompression error that ended the content and the content bytes read before it, or None."""
        if isinstance(self.handle, _DamageGuard) and self.handle.damage is not None:
            return self.handle.damage, self.handle.position
        return None

    def content_read(self) -> int | None:
        """Return the content bytes read so far, or None when the stream does not count them."""
        return self.handle.position if isinstance(self.handle, _DamageGuard) else None

    def __enter__(self) -> _ContentStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.body.close()


class _ObjectOpener:
    """Open one object version's content at an offset, streaming."""

    def __init__(self, client: Any, bucket: str, key: str, etag: str):
        self.client = client
        self.bucket = bucket
        self.key = key
        self.etag = etag

    def _get(self, first_byte: int = 0, last_byte: int | None = None) -> Any:
        arguments = {"Bucket": self.bucket, "Key": self.key, "IfMatch": self.etag}
        if first_byte or last_byte is not None:
            arguments["Range"] = f"bytes={first_byte}-{'' if last_byte is None else last_byte}"
        # With IfMatch, S3 returns 412 PreconditionFailed if the object was replaced since the listing.
        return self.client.get_object(**arguments)["Body"]

    def compression(self) -> str | None:
        """Return "gzip", "zstd" or None, from the object's first bytes."""
        body = self._get(0, 3)
        try:
            magic = body.read(4)
        finally:
            body.close()
        return _compression_of(magic)

    def open_content(self, offset: int) -> _ContentStream:
        """Stream the content from ``offset``; compressed objects are decompressed from their start."""
        if offset == 0:
            body = self._get()
            head = body.read(4)
            compression = _compression_of(head)
            raw = _Prepended(head, body)
            if compression is None:
                return _ContentStream(raw, False, body)
            return _ContentStream(_DamageGuard(_decompressing(raw, compression), 0), False, body)
        compression = self.compression()
        if compression is None:
            # Plain objects resume with a ranged request. The request starts one
            # byte early: if that byte is not a newline, the offset lies inside an over-long line.
            body = self._get(offset - 1)
            mid_line = body.read(1) != b"\n"
            return _ContentStream(body, mid_line, body)
        body = self._get()
        handle = _decompressing(body, compression)
        # The content up to the offset was read before, so no damage lies before it.
        handle.seek(offset - 1)
        guard = _DamageGuard(handle, offset - 1)
        mid_line = guard.read(1) != b"\n"
        return _ContentStream(guard, mid_line, body)


def _compression_of(head: bytes) -> str | None:
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return None


def _decompressing(raw: Any, compression: str | None) -> Any:
    if compression == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if compression == "zstd":
        return open_zstd(raw)
    return raw


class _DamageGuard:
    """A reader of decompressed content that ends at the first damage in the compressed data.

    It stores the error and the content bytes read before it. It reads with
    ``read1``, one decompression step at a time, so the content decompressed
    before the damage is returned instead of being lost with the error.
    """

    def __init__(self, handle: Any, position: int):
        self.handle = handle
        self.position = position
        self.damage: Exception | None = None

    def read(self, size: int = -1) -> bytes:
        if self.damage is not None:
            return b""
        parts = []
        count = 0
        while size is None or size < 0 or count < size:
            try:
                data = self.handle.read1(-1 if size is None or size < 0 else size - count)
            except DAMAGE_ERRORS as exc:
                self.damage = exc
                break
            if not data:
                break
            parts.append(data)
            count += len(data)
        self.position += count
        return b"".join(parts)


class _Prepended:
    """A read-only stream of ``head`` followed by the rest of ``body``."""

    def __init__(self, head: bytes, body: Any):
        self.head = head
        self.body = body

    def read(self, size: int = -1) -> bytes:
        if self.head:
            if size is None or size < 0:
                data, self.head = self.head + self.body.read(), b""
                return data
            data, self.head = self.head[:size], self.head[size:]
            if len(data) < size:
                data += self.body.read(size - len(data))
            return data
        return self.body.read(size) if size is not None and size >= 0 else self.body.read()

    def close(self) -> None:
        self.body.close()
