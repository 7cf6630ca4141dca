"""The S3 store's logic without an S3: part sizes, the part buffer, the multipart writer,
paging, the sweep and the error messages, against a fake aiobotocore client that records
each call. (tests/s3 runs the same code against a real SeaweedFS.)"""

from __future__ import annotations

import asyncio
import datetime
import io
import types
from typing import Any

import pytest
import structlog.testing

pytest.importorskip("aiobotocore")  # the `s3` extra

from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from eft_server import s3_store
from eft_server.s3_settings import S3Location, S3Settings
from eft_server.s3_store import (
    LIST_PAGE,
    MAX_PARTS,
    MIN_PART_SIZE,
    MiB,
    MultipartWriter,
    PartBuffer,
    S3Client,
    S3Failed,
    S3FileStore,
    S3Upload,
    _client_error_message,
    part_size_for,
)
from eft_server.startup import StoreUnusable
from eft_server.storage import StorageError


@pytest.fixture(autouse=True)
def _buffers_counted_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    """Uploads a test leaves open keep their buffers counted in ``PartBuffer.live``;
    the count is put back afterwards, for tests/s3 that expect it at 0."""
    monkeypatch.setattr(PartBuffer, "live", PartBuffer.live)


# --- part sizes --------------------------------------------------------------------------


def test_constants_are_s3s_limits() -> None:
    assert MiB == 1048576
    assert MIN_PART_SIZE == 5 * 1048576
    assert MAX_PARTS == 10000
    assert LIST_PAGE == 1000


@pytest.mark.parametrize(
    ("size", "part"),
    [
        (0, 5 * MiB),
        (1, 5 * MiB),
        (MAX_PARTS * 5 * MiB, 5 * MiB),  # exactly 10,000 parts of 5 MiB
        (MAX_PARTS * 5 * MiB + 1, 6 * MiB),  # one byte more: the next whole MiB
        (MAX_PARTS * 6 * MiB, 6 * MiB),
        (MAX_PARTS * 6 * MiB + 1, 7 * MiB),
        (MAX_PARTS * 100 * MiB - 1, 100 * MiB),
    ],
)
def test_part_size_is_the_smallest_whole_mib_that_fits(size: int, part: int) -> None:
    assert part_size_for(size) == part
    assert part * MAX_PARTS >= size


# --- the part buffer ---------------------------------------------------------------------


def test_a_buffer_takes_what_fits_and_counts_itself() -> None:
    live = PartBuffer.live
    buffer = PartBuffer(10)
    assert PartBuffer.live == live + 1
    assert (buffer.capacity, buffer.filled, buffer.full) == (10, 0, False)
    assert buffer.take(memoryview(b"abcd")) == 4
    assert (buffer.filled, buffer.full) == (4, False)
    assert buffer.contents() == b"abcd"
    assert buffer.take(memoryview(b"efghijklmn")) == 6  # 4 left over
    assert (buffer.filled, buffer.full) == (10, True)
    assert buffer.take(memoryview(b"more")) == 0
    assert buffer.contents() == b"abcdefghij"
    body = buffer.body()
    assert isinstance(body, io.BytesIO)
    assert body.tell() == 0 and body.read() == b"abcdefghij"
    buffer.reset()
    assert (buffer.filled, buffer.full, buffer.capacity) == (0, False, 10)
    assert buffer.take(memoryview(b"XY")) == 2  # the next part, written from the start
    assert buffer.contents() == b"XY"
    body = buffer.body()  # a short (last) part: only its bytes
    assert body.tell() == 0 and body.read() == b"XY"
    buffer.release()
    assert PartBuffer.live == live
    assert (buffer.capacity, buffer.filled) == (0, 0)
    assert buffer.contents() == b""
    buffer.release()  # twice: counted once
    assert PartBuffer.live == live


def test_an_empty_buffer_is_an_empty_body() -> None:
    buffer = PartBuffer(4)
    try:
        assert buffer.body().read() == b""
        assert buffer.contents() == b""
    finally:
        buffer.release()


# --- a fake S3 ---------------------------------------------------------------------------


def client_error(code: str, status: int = 400) -> ClientError:
    response: Any = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "Op")


class FakeApi:
    """Answers by operation name; records every call with its arguments (and, for
    upload_part, the body's bytes as read then)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.answers: dict[str, list[Any]] = {}
        self.bodies: list[bytes] = []

    def __getattr__(self, operation: str) -> Any:
        async def call(**arguments: Any) -> Any:
            self.calls.append((operation, arguments))
            if operation == "upload_part":
                self.bodies.append(arguments["Body"].read())
            queue = self.answers.get(operation)
            answer = queue.pop(0) if queue else self.default(operation, arguments)
            if isinstance(answer, Exception):
                raise answer
            return answer

        return call

    def default(self, operation: str, arguments: dict[str, Any]) -> Any:
        if operation == "upload_part":
            return {"ETag": f"etag-{arguments['PartNumber']}"}
        if operation == "create_multipart_upload":
            return {"UploadId": "up-1"}
        return {}

    def named(self, operation: str) -> list[dict[str, Any]]:
        return [arguments for name, arguments in self.calls if name == operation]


def fake_client(prefix: str = "pre") -> tuple[S3Client, FakeApi]:
    settings = S3Settings(S3Location("bucket", prefix), None, "us-east-1", "id", "secret")
    client = S3Client(settings)
    api = FakeApi()
    client.api = api
    return client, api


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


# --- S3Client ----------------------------------------------------------------------------


def test_a_call_names_the_bucket_and_wraps_failures() -> None:
    client, api = fake_client()
    assert client.bucket == "bucket"
    assert client.location == S3Location("bucket", "pre")
    assert run(client.call("head_object", Key="k")) == {}
    assert api.calls == [("head_object", {"Bucket": "bucket", "Key": "k"})]
    api.answers["head_object"] = [client_error("NoSuchKey", 404)]
    with pytest.raises(S3Failed, match=r"^S3 head_object failed: ") as caught:
        run(client.call("head_object", Key="k"))
    assert isinstance(caught.value, StorageError)
    assert caught.value.code == "NoSuchKey"
    assert caught.value.detail == "object storage refused (NoSuchKey)"
    api.answers["head_object"] = [EndpointConnectionError(endpoint_url="http://x")]
    with pytest.raises(S3Failed) as unreachable:
        run(client.call("head_object", Key="k"))
    assert unreachable.value.code is None
    assert unreachable.value.detail == "object storage unreachable"


def test_s3failed_without_a_code_in_the_error() -> None:
    failed = S3Failed("x")
    failed.__cause__ = ClientError({}, "Op")
    assert failed.code == "None"
    assert S3Failed("y").code is None


def test_multipart_uploads_are_listed_page_by_page() -> None:
    client, api = fake_client()
    api.answers["list_multipart_uploads"] = [
        {
            "Uploads": [{"UploadId": "a"}, {"UploadId": "b"}],
            "IsTruncated": True,
            "NextKeyMarker": "km",
            "NextUploadIdMarker": "um",
        },
        {"Uploads": [{"UploadId": "c"}], "IsTruncated": False},
    ]

    async def listed() -> list[str]:
        return [upload["UploadId"] async for upload in client.multipart_uploads("p/")]

    assert run(listed()) == ["a", "b", "c"]
    first, second = api.named("list_multipart_uploads")
    assert first == {"Bucket": "bucket", "Prefix": "p/", "MaxUploads": 1000}
    assert second == {
        "Bucket": "bucket",
        "Prefix": "p/",
        "MaxUploads": 1000,
        "KeyMarker": "km",
        "UploadIdMarker": "um",
    }


def test_an_empty_listing_is_one_page() -> None:
    client, api = fake_client()

    async def listed() -> list[Any]:
        return [upload async for upload in client.multipart_uploads("p/")]

    assert run(listed()) == []
    assert len(api.calls) == 1


def test_parts_are_read_page_by_page_and_sorted() -> None:
    client, api = fake_client()
    api.answers["list_parts"] = [
        {
            "Parts": [{"PartNumber": 12}, {"PartNumber": 3}],
            "IsTruncated": True,
            "NextPartNumberMarker": "12",
        },
        {"Parts": [{"PartNumber": 20}, {"PartNumber": 4}]},
    ]
    parts = run(client.parts("k", "up"))
    assert [part["PartNumber"] for part in parts] == [3, 4, 12, 20]
    first, second = api.named("list_parts")
    assert first == {
        "Bucket": "bucket",
        "Key": "k",
        "UploadId": "up",
        "MaxParts": 1000,
        "PartNumberMarker": 0,
    }
    assert second["PartNumberMarker"] == 12
    api.answers["list_parts"] = [{}]
    assert run(client.parts("k", "up")) == []


def test_the_sweep_aborts_only_old_uploads_not_kept() -> None:
    client, api = fake_client()
    now = datetime.datetime.now(datetime.UTC)
    uploads = [
        {"Key": "p/old", "UploadId": "old", "Initiated": now - datetime.timedelta(hours=2)},
        {"Key": "p/kept", "UploadId": "kept", "Initiated": now - datetime.timedelta(hours=2)},
        {"Key": "p/new", "UploadId": "new", "Initiated": now - datetime.timedelta(minutes=30)},
        {"Key": "p/gone", "UploadId": "gone", "Initiated": now - datetime.timedelta(hours=3)},
    ]
    api.answers["list_multipart_uploads"] = [{"Uploads": uploads}]
    api.answers["abort_multipart_upload"] = [{}, client_error("NoSuchUpload", 404)]
    count = run(client.abort_older_than("p/", 3600, frozenset({"kept"})))
    assert count == 2
    assert api.named("abort_multipart_upload") == [
        {"Bucket": "bucket", "Key": "p/old", "UploadId": "old"},
        {"Bucket": "bucket", "Key": "p/gone", "UploadId": "gone"},
    ]


def test_the_sweep_keeps_nothing_by_default() -> None:
    client, api = fake_client()
    then = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=100)
    api.answers["list_multipart_uploads"] = [
        {"Uploads": [{"Key": "p/a", "UploadId": "a", "Initiated": then}]}
    ]
    assert run(client.abort_older_than("p/", 50)) == 1


class FakeSession:
    """``get_session()``'s stand-in: its client is a FakeApi, its arguments recorded."""

    def __init__(self, api: FakeApi) -> None:
        self.api = api
        self.created: list[tuple[str, dict[str, Any]]] = []
        self.exits = 0

    def create_client(self, service: str, **arguments: Any) -> Any:
        self.created.append((service, arguments))
        session = self

        class Opened:
            async def __aenter__(self) -> FakeApi:
                return session.api

            async def __aexit__(self, *exc: object) -> None:
                session.exits += 1

        return Opened()


def open_with(
    monkeypatch: pytest.MonkeyPatch, api: FakeApi, endpoint: str | None = "http://s3:9000"
) -> tuple[S3Client, FakeSession]:
    session = FakeSession(api)
    monkeypatch.setattr(s3_store, "get_session", lambda: session)
    settings = S3Settings(S3Location("bkt", "pre"), endpoint, "eu-west-3", "id", "secret")
    return S3Client(settings), session


def test_open_checks_listing_start_and_abort_under_the_prefix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api = FakeApi()
    client, session = open_with(monkeypatch, api)
    run(client.open())
    assert client.api is api
    [(service, arguments)] = session.created
    assert service == "s3"
    config = arguments.pop("config")
    assert arguments == {
        "endpoint_url": "http://s3:9000",
        "region_name": "eu-west-3",
        "aws_access_key_id": "id",
        "aws_secret_access_key": "secret",
    }
    assert (config.connect_timeout, config.read_timeout) == (5, 60)
    assert config.retries == {"max_attempts": 4, "mode": "standard"}
    assert config.request_checksum_calculation == "when_required"
    assert config.response_checksum_validation == "when_required"
    assert config.s3 == {"addressing_style": "path"}
    assert api.calls == [
        ("list_multipart_uploads", {"Bucket": "bkt", "Prefix": "pre", "MaxUploads": 1}),
        ("create_multipart_upload", {"Bucket": "bkt", "Key": "pre/.eft-probe"}),
        ("abort_multipart_upload", {"Bucket": "bkt", "Key": "pre/.eft-probe", "UploadId": "up-1"}),
    ]
    assert session.exits == 0
    run(client.close())
    assert session.exits == 1


@pytest.mark.parametrize(
    ("failure", "says"),
    [
        (
            EndpointConnectionError(endpoint_url="http://s3:9000"),
            "^cannot reach the S3 endpoint http://s3:9000: .* \\(check EFT_S3_ENDPOINT\\)$",
        ),
        (client_error("NoSuchBucket", 404), "^the bucket 'bkt' does not exist at http://s3:9000"),
        (ReadTimeoutError(endpoint_url="x"), "^the S3 store at http://s3:9000 failed: "),
    ],
)
def test_open_refused_is_store_unusable_naming_the_endpoint(
    monkeypatch: pytest.MonkeyPatch, failure: Exception, says: str
) -> None:
    api = FakeApi()
    api.answers["list_multipart_uploads"] = [failure]
    client, session = open_with(monkeypatch, api)
    with pytest.raises(StoreUnusable, match=says) as caught:
        run(client.open())
    assert caught.value.__cause__ is failure
    assert caught.value.fields == {"endpoint": "http://s3:9000"}
    assert session.exits == 1  # closed


def test_aws_is_named_by_its_region(monkeypatch: pytest.MonkeyPatch) -> None:
    api = FakeApi()
    api.answers["create_multipart_upload"] = [client_error("AccessDenied", 403)]
    client, _session = open_with(monkeypatch, api, endpoint=None)
    with pytest.raises(StoreUnusable, match=r"at AWS S3 \(eu-west-3\) \(AccessDenied\)") as caught:
        run(client.open())
    assert caught.value.fields == {"endpoint": "AWS S3 (eu-west-3)"}


@pytest.mark.parametrize(
    ("code", "status", "says"),
    [
        ("NoSuchBucket", 404, "the bucket 'b' does not exist at W (create it first)"),
        ("NoSuchBucket", 400, "the bucket 'b' does not exist at W (create it first)"),
        ("404", 400, "the bucket 'b' does not exist at W"),
        ("Other", 404, "the bucket 'b' does not exist at W"),
        (
            "InvalidAccessKeyId",
            403,
            "the S3 store at W refused the credentials (InvalidAccessKeyId)",
        ),
        ("SignatureDoesNotMatch", 403, "refused the credentials (SignatureDoesNotMatch): check "),
        ("InvalidToken", 400, "refused the credentials (InvalidToken)"),
        ("403", 400, "refused the credentials (403)"),
        ("AccessDenied", 400, "may not write multipart uploads in 'b' at W (AccessDenied)"),
        ("Forbidden", 403, "may not write multipart uploads in 'b' at W (Forbidden)"),
        ("Weird", 500, "the S3 store at W refused the check (Weird): "),
        ("", 500, "the S3 store at W refused the check (500): "),
    ],
)
def test_each_refusal_says_what_to_fix(code: str, status: int, says: str) -> None:
    message = _client_error_message(client_error(code, status), "b", "W")
    assert message.startswith(says) or says in message
    if "credentials (" in says:
        assert message.endswith("check EFT_S3_ACCESS_KEY_ID and EFT_S3_SECRET_ACCESS_KEY")
    if "may not write" in says:
        assert message.endswith(
            "the server needs s3:PutObject, s3:AbortMultipartUpload, "
            "s3:ListMultipartUploadParts and s3:ListBucketMultipartUploads"
        )


def test_a_refusal_without_a_code_names_its_status() -> None:
    response: Any = {"Error": {}, "ResponseMetadata": {"HTTPStatusCode": 500}}
    message = _client_error_message(ClientError(response, "Op"), "b", "W")
    assert message.startswith("the S3 store at W refused the check (500): ")


def test_the_sweep_takes_only_uploads_more_than_its_age(monkeypatch: pytest.MonkeyPatch) -> None:
    """Started exactly ``seconds`` ago is not yet old enough (a clock that stands still)."""
    now = datetime.datetime(2026, 12, 6, 4, 0, tzinfo=datetime.UTC)

    class Frozen(datetime.datetime):
        @classmethod
        def now(cls, tz: datetime.tzinfo | None = None) -> Frozen:
            return cls.fromtimestamp(now.timestamp(), tz)

    clock = types.SimpleNamespace(datetime=Frozen, UTC=datetime.UTC, timedelta=datetime.timedelta)
    monkeypatch.setattr(s3_store, "datetime", clock)
    client, api = fake_client()
    second = datetime.timedelta(seconds=1)
    api.answers["list_multipart_uploads"] = [
        {
            "Uploads": [
                {"Key": "a", "UploadId": "a", "Initiated": now - 60 * second},
                {"Key": "b", "UploadId": "b", "Initiated": now - 61 * second},
            ]
        }
    ]
    assert run(client.abort_older_than("p/", 60)) == 1
    assert [call["UploadId"] for call in api.named("abort_multipart_upload")] == ["b"]


def test_a_refusal_without_code_or_status() -> None:
    message = _client_error_message(ClientError({}, "Op"), "b", "W")
    assert message.startswith("the S3 store at W refused the check (None): ")


# --- the multipart writer ----------------------------------------------------------------


def test_the_writer_sends_whole_parts_and_the_rest_last() -> None:
    client, api = fake_client()
    live = PartBuffer.live

    async def write() -> tuple[MultipartWriter, str]:
        writer = await MultipartWriter.start(client, "pre/key", 4)
        assert (writer.key, writer.upload_id, writer.part_size) == ("pre/key", "up-1", 4)
        await writer.write(b"abc")
        assert (writer.sent, writer.buffered) == (0, 3)
        await writer.write(memoryview(b"defghij"))  # two whole parts, 2 left
        assert (writer.sent, writer.buffered) == (8, 2)
        await writer.write(b"kl")  # exactly fills: sent at once
        assert (writer.sent, writer.buffered) == (12, 0)
        await writer.write(b"m")
        return writer, await writer.complete()

    writer, url = run(write())
    assert url == "s3://bucket/pre/key"
    assert api.named("create_multipart_upload") == [{"Bucket": "bucket", "Key": "pre/key"}]
    assert api.bodies == [b"abcd", b"efgh", b"ijkl", b"m"]
    assert [call["PartNumber"] for call in api.named("upload_part")] == [1, 2, 3, 4]
    assert all(
        (call["Key"], call["UploadId"]) == ("pre/key", "up-1") for call in api.named("upload_part")
    )
    parts = [{"PartNumber": n, "ETag": f"etag-{n}"} for n in (1, 2, 3, 4)]
    assert writer.parts == parts
    assert api.named("complete_multipart_upload") == [
        {
            "Bucket": "bucket",
            "Key": "pre/key",
            "UploadId": "up-1",
            "MultipartUpload": {"Parts": parts},
        }
    ]
    assert writer.buffer is None and writer.buffered == 0
    assert PartBuffer.live == live


def test_a_file_of_whole_parts_sends_no_empty_last_part() -> None:
    client, api = fake_client()

    async def write() -> None:
        writer = MultipartWriter(client, "k", "u", 2)
        await writer.write(b"abcd")
        await writer.complete()

    run(write())
    assert api.bodies == [b"ab", b"cd"]


def test_an_empty_file_is_one_empty_part() -> None:
    client, api = fake_client()

    async def write() -> None:
        writer = MultipartWriter(client, "k", "u", 2)
        await writer.complete()

    run(write())
    assert api.bodies == [b""]
    assert api.named("complete_multipart_upload")[0]["MultipartUpload"] == {
        "Parts": [{"PartNumber": 1, "ETag": "etag-1"}]
    }


def test_a_resumed_writer_numbers_on_from_its_parts() -> None:
    client, api = fake_client()
    earlier = [{"PartNumber": 1, "ETag": "e1"}, {"PartNumber": 2, "ETag": "e2"}]

    async def write() -> MultipartWriter:
        writer = MultipartWriter(client, "k", "u", 3, list(earlier))
        assert writer.sent == 6
        await writer.write(b"xyz")
        return writer

    writer = run(write())
    assert writer.sent == 9
    assert api.named("upload_part")[0]["PartNumber"] == 3
    writer.release()


def test_more_than_max_parts_is_a_storage_error() -> None:
    client, api = fake_client()
    full = [{"PartNumber": n, "ETag": "e"} for n in range(1, MAX_PARTS + 1)]

    async def write() -> None:
        writer = MultipartWriter(client, "k", "u", 1, full)
        try:
            await writer.write(b"x")
        finally:
            writer.release()

    with pytest.raises(StorageError, match=r"^more than 10000 parts: the file outgrew"):
        run(write())
    assert api.calls == []

    almost = full[:-1]

    async def last() -> None:
        writer = MultipartWriter(client, "k", "u", 1, almost)
        await writer.write(b"x")  # part 10,000: allowed
        writer.release()

    run(last())
    assert api.named("upload_part")[0]["PartNumber"] == MAX_PARTS


def test_abort_releases_and_survives_a_failed_abort() -> None:
    client, api = fake_client()
    live = PartBuffer.live
    writer = MultipartWriter(client, "k", "u", 4)
    api.answers["abort_multipart_upload"] = [client_error("InternalError", 500)]
    with structlog.testing.capture_logs() as logged:  # the client's own logger
        run(writer.abort())
    assert writer.buffer is None and PartBuffer.live == live
    assert api.named("abort_multipart_upload") == [
        {"Bucket": "bucket", "Key": "k", "UploadId": "u"}
    ]
    assert len(logged) == 1
    fields = logged[0]
    assert (fields["event"], fields["log_level"]) == ("s3_abort_failed", "warning")
    assert fields["key"] == "k" and fields["error"].startswith("S3 abort_multipart_upload failed")
    writer.release()  # again: nothing
    assert PartBuffer.live == live


# --- version 3 ---------------------------------------------------------------------------


def test_a_version_3_upload_is_active_until_committed() -> None:
    client, api = fake_client()
    store = S3FileStore(client, 4 << 30)
    assert store.part_size == MIN_PART_SIZE
    assert store.prefix == "pre/files/"
    assert store.local_files_dir is None

    async def go() -> tuple[S3Upload, str]:
        upload = await store.open_upload(b"\x01\xab", "name.txt")
        assert store._active == {"up-1"}
        await upload.write(b"hello")
        return upload, await upload.commit()

    _upload, url = run(go())
    assert url == "s3://bucket/pre/files/01ab/name.txt"
    assert store._active == set()
    assert api.named("create_multipart_upload") == [
        {"Bucket": "bucket", "Key": "pre/files/01ab/name.txt"}
    ]
    assert api.bodies == [b"hello"]


def test_a_failed_commit_aborts_and_a_discard_aborts() -> None:
    client, api = fake_client()
    store = S3FileStore(client, 1 << 20)
    api.answers["complete_multipart_upload"] = [client_error("InternalError", 500)]

    async def failed() -> None:
        upload = await store.open_upload(b"\x02", "f")
        await upload.commit()

    with pytest.raises(S3Failed):
        run(failed())
    assert store._active == set()
    assert len(api.named("abort_multipart_upload")) == 1

    async def discarded() -> None:
        upload = await store.open_upload(b"\x02", "g")
        assert store._active == {"up-1"}
        await upload.discard()

    run(discarded())
    assert store._active == set()
    assert len(api.named("abort_multipart_upload")) == 2


@pytest.mark.parametrize("name", ["a/b", "", ".", ".."])
def test_a_name_outside_its_directory_is_refused(name: str) -> None:
    client, api = fake_client()
    store = S3FileStore(client, 1 << 20)
    with pytest.raises(StorageError, match=r"refusing to store .* outside its directory"):
        run(store.open_upload(b"\x01", name))
    assert api.calls == []


def test_the_version_3_sweep_spares_the_active_and_the_recent() -> None:
    client, api = fake_client()
    store = S3FileStore(client, 1 << 20)
    assert run(store.remove_temporary_files()) == 0
    assert api.calls == []
    then = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=100)
    store._active.add("mine")
    api.answers["list_multipart_uploads"] = [
        {
            "Uploads": [
                {"Key": "pre/files/a", "UploadId": "mine", "Initiated": then},
                {"Key": "pre/files/b", "UploadId": "other", "Initiated": then},
            ]
        }
    ]
    assert run(store.remove_temporary_files(older_than=10)) == 1
    assert api.named("list_multipart_uploads")[0]["Prefix"] == "pre/files/"
    assert api.named("abort_multipart_upload") == [
        {"Bucket": "bucket", "Key": "pre/files/b", "UploadId": "other"}
    ]
