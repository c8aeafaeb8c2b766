"""S3 sources against a local moto S3 server on 127.0.0.1, never AWS."""

from __future__ import annotations

import gzip
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import zstandard

pytest.importorskip("moto.server")
import boto3  # noqa: E402
from botocore.config import Config as BotoConfig  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402

import gatewatch.s3source as s3source  # noqa: E402
from gatewatch.config import S3Options, load_config  # noqa: E402
from gatewatch.detect import AutoFormat  # noqa: E402
from gatewatch.errors import SourceError  # noqa: E402
from gatewatch.ingest import MAX_LINE_BYTES  # noqa: E402
from gatewatch.runner import ingest_all  # noqa: E402
from gatewatch.s3source import ingest_s3_source  # noqa: E402
from gatewatch.store import Store  # noqa: E402
from helpers import SimpleConnector, simple_line as line  # noqa: E402


@pytest.fixture(scope="module")
def s3_endpoint():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(autouse=True)
def local_aws(monkeypatch, tmp_path, s3_endpoint):
    """Point every AWS client at the local server with fake credentials and no metadata lookups."""
    for name in (
        "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


@pytest.fixture
def options(s3_endpoint) -> S3Options:
    return S3Options(endpoint_url=s3_endpoint, region="us-east-1", addressing_style="path")


@pytest.fixture
def bucket(s3_endpoint):
    """Create an empty bucket with a unique name and return a client and its name."""
    client = boto3.client(
        "s3", endpoint_url=s3_endpoint, region_name="us-east-1", config=BotoConfig(s3={"addressing_style": "path"})
    )
    name = f"logs-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return client, name


def ingest(store, bucket, options, prefix: str = "alb/", chunk_bytes: int = 1 << 20, connector=None):
    _, name = bucket
    return ingest_s3_source(
        store, "alb", "simple", connector or SimpleConnector(), [f"s3://{name}/{prefix}"], options, chunk_bytes
    )


def put(bucket, key: str, body: bytes) -> None:
    client, name = bucket
    client.put_object(Bucket=name, Key=key, Body=body)


def seconds(store) -> list[int]:
    return [row[0].second for row in store.con.execute("SELECT ts FROM events ORDER BY ts").fetchall()]


def test_s3_new_objects_read_once(store, bucket, options):
    put(bucket, "alb/2026/11/03/a.log", (line(1) + line(2)).encode())
    put(bucket, "other/b.log", line(30).encode())
    first = ingest(store, bucket, options)
    assert first.events == 2

    put(bucket, "alb/2026/11/03/b.log", line(3).encode())
    second = ingest(store, bucket, options)
    assert second.events == 1
    assert [f.path for f in second.files] == [f"s3://{bucket[1]}/alb/2026/11/03/b.log"]

    third = ingest(store, bucket, options)
    assert third.files == []
    assert seconds(store) == [1, 2, 3]


def test_s3_events_name_object(store, bucket, options):
    put(bucket, "alb/a.log", line(1).encode())
    ingest(store, bucket, options)
    file, fmt = store.con.execute("SELECT file, format FROM events").fetchone()
    assert file == f"s3://{bucket[1]}/alb/a.log"
    assert fmt == "simple"


def test_s3_gzip_and_zstd_objects(store, bucket, options):
    put(bucket, "alb/a.log.gz", gzip.compress((line(1) + line(2)).encode()))
    put(bucket, "alb/firehose-object-without-suffix", gzip.compress(line(3).encode()))
    put(bucket, "alb/c.log.zst", zstandard.ZstdCompressor().compress(line(4).encode()))
    report = ingest(store, bucket, options)
    assert report.errors == []
    assert seconds(store) == [1, 2, 3, 4]


def test_s3_crash_mid_object_resumes(store, bucket, options, monkeypatch):
    text = "".join(line(s, f"/p{s:02d}") for s in range(40))
    put(bucket, "alb/big.log", text.encode())
    original = s3source.iter_chunks

    def crash_after_two(*args, **kwargs):
        for index, chunk in enumerate(original(*args, **kwargs)):
            if index == 2:
                raise KeyboardInterrupt("simulated kill between chunks")
            yield chunk

    monkeypatch.setattr(s3source, "iter_chunks", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        ingest(store, bucket, options, chunk_bytes=200)
    committed = store.con.execute("SELECT count(*) FROM events").fetchone()[0]
    assert 0 < committed < 40

    committed_offset = store.con.execute('SELECT "offset" FROM s3_objects').fetchone()[0]
    monkeypatch.setattr(s3source, "iter_chunks", original)
    client = s3source.make_client(options)
    ranges: list[str | None] = []
    get_object = client.get_object

    def recording_get_object(**arguments):
        ranges.append(arguments.get("Range"))
        return get_object(**arguments)

    client.get_object = recording_get_object
    report = ingest_s3_source(
        store, "alb", "simple", SimpleConnector(), [f"s3://{bucket[1]}/alb/"], options, 200, client=client
    )
    assert report.events == 40 - committed
    # One request for the magic bytes, then one ranged from the byte before the checkpoint.
    assert ranges == ["bytes=0-3", f"bytes={committed_offset - 1}-"]
    paths = [row[0] for row in store.con.execute("SELECT path FROM events ORDER BY path").fetchall()]
    assert paths == [f"/p{s:02d}" for s in range(40)]


@pytest.mark.parametrize(
    ("key", "compress"),
    [("alb/big.log.gz", gzip.compress), ("alb/big.log.zst", zstandard.ZstdCompressor().compress)],
)
def test_s3_crash_mid_compressed_object_resumes(store, bucket, options, monkeypatch, key, compress):
    text = "".join(line(s, f"/p{s:02d}") for s in range(40))
    put(bucket, key, compress(text.encode()))
    original = s3source.iter_chunks

    def crash_after_one(*args, **kwargs):
        for index, chunk in enumerate(original(*args, **kwargs)):
            if index == 1:
                raise KeyboardInterrupt("simulated kill between chunks")
            yield chunk

    monkeypatch.setattr(s3source, "iter_chunks", crash_after_one)
    with pytest.raises(KeyboardInterrupt):
        ingest(store, bucket, options, chunk_bytes=300)
    committed = store.con.execute("SELECT count(*) FROM events").fetchone()[0]
    assert 0 < committed < 40
    monkeypatch.setattr(s3source, "iter_chunks", original)
    ingest(store, bucket, options, chunk_bytes=300)
    paths = [row[0] for row in store.con.execute("SELECT path FROM events ORDER BY path").fetchall()]
    assert paths == [f"/p{s:02d}" for s in range(40)]


def test_s3_replaced_object_read_again(store, bucket, options, caplog):
    put(bucket, "alb/a.log", line(1).encode())
    ingest(store, bucket, options)
    put(bucket, "alb/a.log", (line(1) + line(2)).encode())
    report = ingest(store, bucket, options)
    assert report.events == 2
    assert seconds(store) == [1, 1, 2]
    assert "was replaced" in caplog.text


def test_s3_same_content_uploaded_again_skipped(store, bucket, options):
    put(bucket, "alb/a.log", line(1).encode())
    ingest(store, bucket, options)
    put(bucket, "alb/a.log", line(1).encode())
    assert ingest(store, bucket, options).files == []


def test_s3_deleted_object_keeps_events(store, bucket, options):
    client, name = bucket
    put(bucket, "alb/a.log", line(1).encode())
    ingest(store, bucket, options)
    client.delete_object(Bucket=name, Key="alb/a.log")
    report = ingest(store, bucket, options)
    assert report.files == []
    assert seconds(store) == [1]
    assert store.con.execute("SELECT count(*) FROM s3_objects").fetchone()[0] == 1


def test_s3_start_after_skips_older_keys(store, bucket, options):
    put(bucket, "alb/2026-11-01.log", line(1).encode())
    put(bucket, "alb/2026-11-03.log", line(3).encode())
    options.start_after = "alb/2026-11-02"
    ingest(store, bucket, options)
    assert seconds(store) == [3]


def test_s3_oversize_line_skipped(store, bucket, options):
    put(bucket, "alb/a.log", b"x" * (2 * MAX_LINE_BYTES) + b"\n" + line(5).encode())
    report = ingest(store, bucket, options, chunk_bytes=MAX_LINE_BYTES // 2)
    assert seconds(store) == [5]
    assert report.rejects >= 1


def test_s3_missing_bucket_raises(store, options):
    with pytest.raises(SourceError, match="NoSuchBucket"):
        ingest_s3_source(store, "alb", "simple", SimpleConnector(), ["s3://no-such-bucket-here/"], options)


def test_s3_auto_format_kept(store, bucket, options):
    nginx = '192.0.2.7 - - [10/Oct/2024:13:55:36 +0000] "GET /a HTTP/1.1" 200 5 "-" "curl/8"\n'
    put(bucket, "alb/a.log", (nginx * 3).encode())
    report = ingest(store, bucket, options, connector=AutoFormat({}))
    assert report.files[0].chosen_format == "combined"
    assert report.files[0].format_note.startswith("format auto chose 'combined'")
    assert store.con.execute("SELECT format FROM s3_objects").fetchone()[0] == "combined"
    assert store.con.execute("SELECT DISTINCT format FROM events").fetchall() == [("combined",)]


def test_s3_source_from_config(tmp_path: Path, bucket, s3_endpoint):
    put(bucket, "alb/a.log", '192.0.2.7 - - [10/Oct/2024:13:55:36 +0000] "GET /a HTTP/1.1" 200 5 "-" "c"\n'.encode())
    (tmp_path / "gatewatch.yaml").write_text(
        "sources:\n"
        "  - name: alb\n"
        "    format: combined\n"
        f"    path: s3://{bucket[1]}/alb/\n"
        "    s3:\n"
        f"      endpoint_url: {s3_endpoint}\n"
        "      region: us-east-1\n"
        "      addressing_style: path\n",
        encoding="utf-8",
    )
    config = load_config(tmp_path / "gatewatch.yaml")
    with Store(tmp_path / "gw.duckdb") as store:
        reports, errors = ingest_all(config, store)
        assert errors == []
        assert reports[0].events == 1


def test_s3_object_replaced_during_read(store, bucket, options):
    client, name = bucket
    put(bucket, "alb/a.log", line(1).encode())
    location = s3source.S3Location.parse(f"s3://{name}/alb/")
    listed = s3source.list_pending(client, location, {})
    put(bucket, "alb/a.log", (line(1) + line(2)).encode())
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError, match="PreconditionFailed|412"):
        s3source.ingest_object(store, "alb", "simple", SimpleConnector(), client, location, listed[0], None)
    assert store.con.execute("SELECT count(*) FROM events").fetchone()[0] == 0


@pytest.mark.parametrize(
    ("source_yaml", "message"),
    [
        ("    path: [s3://b/p/, /var/log/x.log]\n", "either files or s3:// prefixes"),
        ("    path: /var/log/x.log\n    s3:\n      region: eu-west-1\n", "need a path of the form s3://"),
        ("    path: s3:///prefix/\n", "names no bucket"),
        ("    path: s3://b/p/\n    s3:\n      endpoint_url: 127.0.0.1:9000\n", "must start with http://"),
    ],
)
def test_s3_config_errors(tmp_path, source_yaml, message):
    from gatewatch.errors import ConfigError

    (tmp_path / "gatewatch.yaml").write_text(
        "sources:\n  - name: alb\n    format: combined\n" + source_yaml, encoding="utf-8"
    )
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path / "gatewatch.yaml")


def test_s3_unknown_profile_raises(store):
    options = S3Options(profile="no-such-profile")
    with pytest.raises(SourceError, match="creating the S3 client failed: ProfileNotFound"):
        ingest_s3_source(store, "alb", "simple", SimpleConnector(), ["s3://bucket/"], options)


def test_s3_missing_credentials_raises(store, options, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(SourceError, match="no AWS credentials found"):
        ingest_s3_source(store, "alb", "simple", SimpleConnector(), ["s3://bucket/"], options)


def settled_prefixes(store) -> list[str]:
    return [row[0] for row in store.con.execute("SELECT prefix FROM s3_settled_prefixes ORDER BY 1").fetchall()]


def test_s3_settled_folders_not_listed(store, bucket, options):
    put(bucket, "alb/2026/11/01/a.log", line(1).encode())
    put(bucket, "alb/2026/11/02/b.log", line(2).encode())
    options.settled_after = timedelta(0)
    assert ingest(store, bucket, options).events == 2
    assert settled_prefixes(store) == ["alb/2026/11/01/", "alb/2026/11/02/"]

    put(bucket, "alb/2026/11/03/c.log", line(3).encode())
    put(bucket, "alb/2026/11/01/late.log", line(4).encode())
    ingest(store, bucket, options)
    assert seconds(store) == [1, 2, 3]


def test_s3_recent_folders_stay_listed(store, bucket, options):
    put(bucket, "alb/2026/11/01/a.log", line(1).encode())
    options.settled_after = timedelta(days=1)
    ingest(store, bucket, options)
    put(bucket, "alb/2026/11/01/late.log", line(4).encode())
    ingest(store, bucket, options)
    assert settled_prefixes(store) == []
    assert seconds(store) == [1, 4]


def test_s3_failed_object_blocks_settling(store, bucket, options):
    put(bucket, "alb/2026/11/01/a.log", line(1).encode())
    put(bucket, "alb/2026/11/02/bad.log.gz", b"\x1f\x8b" + b"not gzip at all")
    options.settled_after = timedelta(0)
    report = ingest(store, bucket, options)
    assert len(report.errors) == 1
    assert "alb/2026/11/02/bad.log.gz" in str(report.errors[0])
    assert settled_prefixes(store) == ["alb/2026/11/01/"]


def test_s3_settled_after_in_config(tmp_path):
    (tmp_path / "gatewatch.yaml").write_text(
        "sources:\n  - name: alb\n    format: combined\n    path: s3://b/p/\n    s3:\n      settled_after: 2d\n",
        encoding="utf-8",
    )
    assert load_config(tmp_path / "gatewatch.yaml").sources[0].s3.settled_after == timedelta(days=2)


def reject_reasons(store) -> list[tuple[str, str]]:
    return store.con.execute("SELECT file, reason FROM rejects ORDER BY \"offset\"").fetchall()


@pytest.mark.parametrize("connector", [SimpleConnector(), AutoFormat({})], ids=["simple", "auto"])
def test_s3_empty_object_complete(store, bucket, options, connector):
    put(bucket, "alb/empty.log", b"")
    first = ingest(store, bucket, options, connector=connector)
    assert first.errors == []
    assert store.con.execute("SELECT complete, size FROM s3_objects").fetchall() == [(True, 0)]
    assert ingest(store, bucket, options, connector=connector).files == []


def test_s3_empty_gzip_object_complete(store, bucket, options):
    put(bucket, "alb/empty.log.gz", gzip.compress(b""))
    assert ingest(store, bucket, options, connector=AutoFormat({})).errors == []
    assert ingest(store, bucket, options, connector=AutoFormat({})).files == []


def truncate(data: bytes) -> bytes:
    return data[: len(data) * 3 // 4]


def corrupt(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes(byte ^ 0x55 for byte in data[middle : middle + 50]) + data[middle + 50 :]


@pytest.mark.parametrize(
    ("key", "compress", "damage"),
    [
        ("alb/cut.log.gz", gzip.compress, truncate),
        ("alb/bad.log.gz", gzip.compress, corrupt),
        # Without a checksum, zstd does not detect changed bytes; the zstd tool writes one by default.
        ("alb/bad.log.zst", zstandard.ZstdCompressor(write_checksum=True).compress, corrupt),
    ],
)
def test_s3_damaged_object_reported_once(store, bucket, options, key, compress, damage):
    text = "".join(line(s % 60, f"/p{s:03d}") for s in range(400))
    data = compress(text.encode())
    put(bucket, key, damage(data))
    first = ingest(store, bucket, options, chunk_bytes=300)
    assert len(first.errors) == 1
    assert key in str(first.errors[0])
    assert "compressed object is damaged" in str(first.errors[0])
    assert first.events < 400
    rows = reject_reasons(store)
    assert rows[-1][0] == f"s3://{bucket[1]}/{key}"
    assert "compressed object is damaged" in rows[-1][1]
    assert "bytes read before the damage" in rows[-1][1]
    assert store.con.execute("SELECT complete FROM s3_objects").fetchone()[0] is True

    second = ingest(store, bucket, options, chunk_bytes=300)
    assert second.errors == []
    assert second.files == []

    put(bucket, key, data)
    third = ingest(store, bucket, options, chunk_bytes=300)
    assert third.errors == []
    assert third.events == 400


def test_s3_truncated_gzip_keeps_events(store, bucket, options):
    text = "".join(line(s % 60, f"/p{s:03d}") for s in range(400))
    put(bucket, "alb/cut.log.gz", truncate(gzip.compress(text.encode())))
    report = ingest(store, bucket, options, chunk_bytes=300)
    assert report.events > 0
    paths = [row[0] for row in store.con.execute("SELECT path FROM events ORDER BY path").fetchall()]
    assert paths == [f"/p{s:03d}" for s in range(len(paths))]
    line_start, reason = store.con.execute("SELECT line, reason FROM rejects").fetchone()
    assert line_start.startswith("2026-")
    assert "a line cut short and not parsed" in reason


def test_s3_damaged_object_auto_format(store, bucket, options):
    put(bucket, "alb/bad.log.gz", b"\x1f\x8b" + b"not gzip at all")
    first = ingest(store, bucket, options, connector=AutoFormat({}))
    assert len(first.errors) == 1
    assert "compressed object is damaged: BadGzipFile" in str(first.errors[0])
    assert ingest(store, bucket, options, connector=AutoFormat({})).files == []
