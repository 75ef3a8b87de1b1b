"""The storage contract against a real S3 server (SeaweedFS), side by side with the local folder,
and what only S3 has: prefixes inside a bucket, content types, paging, bad credentials."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from farm.storage import LocalFolderStorage, ObjectMissing, S3Storage, open_storage
# The s3_server and s3_bucket fixtures come from tests/conftest.py. Importing them here as
# well would register a second session fixture and start a second server.
from tests.fixtures.s3 import S3ServerInfo
from tests.unit.test_storage_local import PNG, StorageContract

pytestmark = pytest.mark.integration


def make_s3_storage(server: S3ServerInfo, bucket: str, **options) -> S3Storage:
    return S3Storage(
        bucket,
        endpoint_url=server.endpoint_url,
        region=server.region,
        access_key_id=server.access_key_id,
        secret_access_key=server.secret_access_key,
        **options,
    )


class TestStorageContract(StorageContract):
    """One contract, every implementation: a failure here names the backend that broke it."""

    @pytest.fixture(params=["local", "s3", "s3-prefixed-paged"])
    def storage(self, request, tmp_path):
        if request.param == "local":
            return LocalFolderStorage(tmp_path / "objects")
        server = request.getfixturevalue("s3_server")
        bucket = request.getfixturevalue("s3_bucket")
        if request.param == "s3":
            return make_s3_storage(server, bucket)
        # Two keys a page, so every listing in the contract crosses page boundaries.
        return make_s3_storage(server, bucket, prefix="farm/renders", list_page_size=2)


def test_keys_live_under_the_prefix(s3_server, s3_bucket):
    storage = make_s3_storage(s3_server, s3_bucket, prefix="/farm/renders/")
    storage.put("images/a.png", b"1", PNG)

    raw = s3_server.client().list_objects_v2(Bucket=s3_bucket)
    assert [item["Key"] for item in raw["Contents"]] == ["farm/renders/images/a.png"]
    assert list(storage.list_keys()) == ["images/a.png"]
    assert storage.describe() == f"s3://{s3_bucket}/farm/renders/ at {s3_server.endpoint_url}"


def test_prefixes_keep_tenants_apart(s3_server, s3_bucket):
    renders = make_s3_storage(s3_server, s3_bucket, prefix="renders")
    # "renders-old" starts with "renders" as a string: the prefix must end at a "/".
    old = make_s3_storage(s3_server, s3_bucket, prefix="renders-old")
    whole = make_s3_storage(s3_server, s3_bucket)
    renders.put("a.png", b"new", PNG)
    old.put("a.png", b"old", PNG)

    assert renders.get("a.png") == b"new"
    assert old.get("a.png") == b"old"
    assert list(renders.list_keys()) == ["a.png"]
    assert list(old.list_keys()) == ["a.png"]
    assert sorted(whole.list_keys()) == ["renders-old/a.png", "renders/a.png"]
    old.delete("a.png")
    assert renders.exists("a.png")
    with pytest.raises(ObjectMissing):
        old.get("a.png")


def test_content_type_is_stored(s3_server, s3_bucket):
    storage = make_s3_storage(s3_server, s3_bucket)
    storage.put("images/a.png", b"\x89PNG", PNG)
    storage.put("meta/a.json", b"{}", "application/json")
    client = s3_server.client()
    assert client.head_object(Bucket=s3_bucket, Key="images/a.png")["ContentType"] == PNG
    assert client.head_object(Bucket=s3_bucket, Key="meta/a.json")["ContentType"] == (
        "application/json"
    )


def test_listing_follows_continuation_tokens(s3_server, s3_bucket):
    storage = make_s3_storage(s3_server, s3_bucket, prefix="p", list_page_size=3)
    keys = [f"images/{index:02d}.png" for index in range(10)]
    for key in keys:
        storage.put(key, b"", PNG)
    storage.put("other/x.png", b"", PNG)
    requests = []
    storage.client.meta.events.register(
        "before-call.s3.ListObjectsV2", lambda params, **_: requests.append(params)
    )

    assert sorted(storage.list_keys("images/")) == keys
    assert len(requests) == 4  # 3 + 3 + 3 + 1
    assert all(request["query_string"]["max-keys"] == 3 for request in requests)


def test_open_storage_reaches_the_server(s3_server, s3_bucket):
    storage = open_storage(
        f"s3://{s3_bucket}/renders",
        s3_endpoint_url=s3_server.endpoint_url,
        s3_region=s3_server.region,
        s3_access_key_id=s3_server.access_key_id,
        s3_secret_access_key=s3_server.secret_access_key,
    )
    storage.put("images/a.png", b"via url", PNG)
    assert s3_server.client().get_object(Bucket=s3_bucket, Key="renders/images/a.png")[
        "Body"
    ].read() == b"via url"


def test_a_missing_bucket_is_not_a_missing_object(s3_server):
    # A wrong bucket is a configuration error and must not pass for "no such image yet".
    storage = make_s3_storage(s3_server, "no-such-bucket-for-farm-tests")
    with pytest.raises(ClientError) as caught:
        storage.get("images/a.png")
    assert not isinstance(caught.value, ObjectMissing)
    assert caught.value.response["Error"]["Code"] == "NoSuchBucket"


def test_wrong_credentials_are_refused(s3_server, s3_bucket):
    storage = S3Storage(
        s3_bucket,
        endpoint_url=s3_server.endpoint_url,
        region=s3_server.region,
        access_key_id=s3_server.access_key_id,
        secret_access_key="not-the-secret",
    )
    with pytest.raises(ClientError) as caught:
        storage.put("images/a.png", b"x", PNG)
    assert caught.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    with pytest.raises(ClientError):
        storage.get("images/a.png")


def test_a_given_client_is_used(s3_server, s3_bucket):
    client = s3_server.client()
    storage = S3Storage(s3_bucket, client=client)
    storage.put("a.png", b"1", PNG)
    assert storage.client is client
    assert client.get_object(Bucket=s3_bucket, Key="a.png")["Body"].read() == b"1"


def test_an_unreachable_endpoint_is_an_outage_not_a_fault(s3_server, s3_bucket):
    from farm.storage import StorageUnavailable
    from tests.fixtures.processes import free_port

    nothing_there = S3Storage(s3_bucket, endpoint_url=f"http://127.0.0.1:{free_port()}", region=s3_server.region,
                              access_key_id=s3_server.access_key_id,
                              secret_access_key=s3_server.secret_access_key)
    with pytest.raises(StorageUnavailable, match="cannot be reached"):
        nothing_there.put("images/a.png", b"x", PNG)
    with pytest.raises(StorageUnavailable):
        nothing_there.get("images/a.png")
    # Wrong credentials on a reachable server stay a fault of this worker (see the test above).
    assert not issubclass(StorageUnavailable, ClientError)
