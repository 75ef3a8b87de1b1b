"""The storage contract on a local folder, the local folder's own promises, content keys and
storage URLs. The same contract runs against S3 in tests/integration/test_storage_s3.py."""

from __future__ import annotations

import hashlib
import os
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from farm.errors import InvalidInput
from farm.storage import (
    LocalFolderStorage,
    ObjectMissing,
    ObjectStorage,
    S3Storage,
    content_key,
    open_storage,
)

PNG = "image/png"
BAD_KEYS = [
    "",
    "/etc/passwd",
    "../outside.png",
    "images/../../outside.png",
    "images/..",
    "./images/a.png",
    "images//a.png",
    "images/",
    "images\\a.png",
    "..\\outside.png",
    "images/.hidden",
    "images/a\x00.png",
    "a" * 1025,
]


class StorageContract:
    """Behaviour every ObjectStorage must show. Subclasses provide a `storage` fixture."""

    def test_satisfies_the_protocol(self, storage):
        assert isinstance(storage, ObjectStorage)
        assert storage.describe()

    def test_round_trip(self, storage):
        data = bytes(range(256)) * 3
        storage.put("images/ab/cd/one.png", data, PNG)
        assert storage.get("images/ab/cd/one.png") == data
        assert storage.exists("images/ab/cd/one.png")

    def test_empty_object(self, storage):
        storage.put("empty.bin", b"", "application/octet-stream")
        assert storage.get("empty.bin") == b""
        assert storage.exists("empty.bin")

    def test_object_larger_than_a_chunk(self, storage):
        # SeaweedFS splits files into 4 MiB chunks; a 5 MiB object crosses a boundary.
        data = os.urandom(5 * 1024 * 1024)
        storage.put("big.bin", data, "application/octet-stream")
        assert storage.get("big.bin") == data

    def test_missing_object(self, storage):
        assert not storage.exists("images/nothing.png")
        with pytest.raises(ObjectMissing) as caught:
            storage.get("images/nothing.png")
        assert isinstance(caught.value, KeyError)
        assert caught.value.key == "images/nothing.png"
        assert "images/nothing.png" in str(caught.value)

    def test_a_folder_is_not_an_object(self, storage):
        storage.put("images/ab/cd/one.png", b"1", PNG)
        assert not storage.exists("images/ab")
        with pytest.raises(ObjectMissing):
            storage.get("images/ab")

    def test_overwrite_keeps_the_last_write(self, storage):
        storage.put("images/same.png", b"first", PNG)
        storage.put("images/same.png", b"second", PNG)
        assert storage.get("images/same.png") == b"second"
        assert list(storage.list_keys("images/")) == ["images/same.png"]

    def test_content_keys_make_rewrites_harmless(self, storage):
        data = b"\x89PNG pretend image"
        key = content_key(data, ".png")
        storage.put(key, data, PNG)
        storage.put(content_key(data, ".png"), data, PNG)  # a retried render
        assert list(storage.list_keys()) == [key]
        assert storage.get(key) == data

    def test_delete(self, storage):
        storage.put("images/gone.png", b"x", PNG)
        storage.put("images/kept.png", b"y", PNG)
        storage.delete("images/gone.png")
        assert not storage.exists("images/gone.png")
        with pytest.raises(ObjectMissing):
            storage.get("images/gone.png")
        assert list(storage.list_keys()) == ["images/kept.png"]

    def test_delete_is_idempotent(self, storage):
        storage.delete("images/never-written.png")
        storage.put("images/once.png", b"x", PNG)
        storage.delete("images/once.png")
        storage.delete("images/once.png")
        assert not storage.exists("images/once.png")

    def test_list_objects_gives_keys_with_their_modification_time(self, storage):
        before = datetime.now(timezone.utc) - timedelta(seconds=5)
        storage.put("images/a.png", b"a", PNG)
        storage.put("thumbnails/b.webp", b"b", "image/webp")
        listed = {o.key: o.modified_at for o in storage.list_objects()}
        assert set(listed) == {"images/a.png", "thumbnails/b.webp"}
        after = datetime.now(timezone.utc) + timedelta(seconds=5)
        assert all(before < at < after for at in listed.values())
        assert [o.key for o in storage.list_objects("thumb")] == ["thumbnails/b.webp"]

    def test_list_keys_by_prefix(self, storage):
        keys = [
            "images/ab/cd/x.png",
            "images/ab/ce/y.png",
            "images/ac/zz/z.png",
            "imagesX/q.png",
            "images-old/r.png",
            "thumbs/a.png",
            "top.png",
        ]
        for key in reversed(keys):
            storage.put(key, key.encode(), PNG)

        # The order is the backend's (see ObjectStorage.list_keys), so compare sorted lists;
        # a key listed twice would still show.
        assert sorted(storage.list_keys()) == sorted(keys)
        assert sorted(storage.list_keys("")) == sorted(keys)
        assert sorted(storage.list_keys("images/")) == [
            "images/ab/cd/x.png", "images/ab/ce/y.png", "images/ac/zz/z.png",
        ]
        # A prefix is a string prefix, not a folder name.
        assert sorted(storage.list_keys("images")) == [
            "images-old/r.png", "images/ab/cd/x.png", "images/ab/ce/y.png",
            "images/ac/zz/z.png", "imagesX/q.png",
        ]
        assert sorted(storage.list_keys("images/a")) == [
            "images/ab/cd/x.png", "images/ab/ce/y.png", "images/ac/zz/z.png",
        ]
        assert sorted(storage.list_keys("images/ab/c")) == [
            "images/ab/cd/x.png", "images/ab/ce/y.png",
        ]
        assert sorted(storage.list_keys("images/ab/cd/x.png")) == ["images/ab/cd/x.png"]
        assert sorted(storage.list_keys("t")) == ["thumbs/a.png", "top.png"]
        assert sorted(storage.list_keys("nothing/")) == []
        assert sorted(storage.list_keys("images/zz")) == []

    def test_list_keys_is_lazy(self, storage):
        storage.put("a/1.png", b"1", PNG)
        keys = storage.list_keys()
        assert iter(keys) is keys
        assert next(keys) == "a/1.png"

    def test_bad_keys_are_refused_everywhere(self, storage):
        for key in BAD_KEYS:
            for name, operation in [
                ("put", lambda: storage.put(key, b"x", PNG)),
                ("get", lambda: storage.get(key)),
                ("exists", lambda: storage.exists(key)),
                ("delete", lambda: storage.delete(key)),
            ]:
                with pytest.raises(InvalidInput) as caught:
                    operation()
                assert caught.value.field == "key", (name, key)
        assert list(storage.list_keys()) == []

    def test_bad_prefixes_are_refused(self, storage):
        for prefix in ["/images", "../", "images/../", "a\\b", "a//b", "images/.tmp"]:
            with pytest.raises(InvalidInput) as caught:
                storage.list_keys(prefix)  # on the call, before any iteration
            assert caught.value.field == "prefix", prefix


class TestLocalFolderContract(StorageContract):
    @pytest.fixture
    def storage(self, tmp_path):
        return LocalFolderStorage(tmp_path / "objects")


# The local folder's own promises.


def test_put_creates_the_folders(tmp_path):
    storage = LocalFolderStorage(tmp_path / "does" / "not" / "exist")
    storage.put("images/ab/cd/x.png", b"data", PNG)
    assert (tmp_path / "does/not/exist/images/ab/cd/x.png").read_bytes() == b"data"


def test_reading_before_anything_was_written(tmp_path):
    storage = LocalFolderStorage(tmp_path / "objects")
    assert list(storage.list_keys()) == []
    assert not storage.exists("x.png")
    storage.delete("x.png")
    with pytest.raises(ObjectMissing):
        storage.get("x.png")


def _all_files(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())


def test_a_write_leaves_no_temporary_files(tmp_path):
    storage = LocalFolderStorage(tmp_path)
    storage.put("images/a.png", b"1", PNG)
    storage.put("images/a.png", b"2", PNG)
    storage.put("images/b.png", b"3", PNG)
    assert _all_files(tmp_path) == ["images/a.png", "images/b.png"]


def test_a_failed_write_keeps_the_old_object_and_cleans_up(tmp_path, monkeypatch):
    storage = LocalFolderStorage(tmp_path)
    storage.put("images/a.png", b"old", PNG)

    def broken_replace(source, destination):
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk on fire"):
        storage.put("images/a.png", b"new", PNG)
    monkeypatch.undo()

    assert storage.get("images/a.png") == b"old"
    assert _all_files(tmp_path) == ["images/a.png"]


def test_the_data_is_synced_before_the_rename(tmp_path, monkeypatch):
    storage = LocalFolderStorage(tmp_path)
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(
        os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b))[1]
    )
    storage.put("a.png", b"1", PNG)
    # File contents first, then the rename, then the folder entry.
    assert events == ["fsync", "replace", "fsync"]


def test_temporary_files_of_writes_in_progress_are_not_listed(tmp_path):
    storage = LocalFolderStorage(tmp_path)
    storage.put("images/a.png", b"1", PNG)
    (tmp_path / "images" / ".b.png.0123abcd.tmp").write_bytes(b"half")
    assert list(storage.list_keys()) == ["images/a.png"]


def test_objects_are_readable_by_others_as_umask_allows(tmp_path):
    storage = LocalFolderStorage(tmp_path)
    storage.put("a.png", b"1", PNG)
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "a.png").stat().st_mode & 0o777 == 0o666 & ~umask


def test_local_listing_is_in_key_order_across_folders(tmp_path):
    # Not part of the contract, but a local folder lists like AWS does. "-" and "." sort
    # before "/", "0" after it: a plain folder-by-folder walk gets this wrong.
    keys = ["a-b/1", "a.b", "a/x", "a/y/z", "a0", "b"]
    storage = LocalFolderStorage(tmp_path)
    for key in keys:
        storage.put(key, b"", PNG)
    assert list(storage.list_keys()) == sorted(keys)
    assert list(storage.list_keys("a")) == sorted(keys)[:-1]


def test_a_symlink_out_of_the_root_is_not_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.png").write_bytes(b"secret")
    root = tmp_path / "root"
    root.mkdir()
    (root / "escape").symlink_to(outside, target_is_directory=True)
    storage = LocalFolderStorage(root)

    for operation in (
        lambda: storage.put("escape/new.png", b"x", PNG),
        lambda: storage.get("escape/secret.png"),
        lambda: storage.exists("escape/secret.png"),
        lambda: storage.delete("escape/secret.png"),
    ):
        with pytest.raises(InvalidInput) as caught:
            operation()
        assert caught.value.field == "key"
    assert list(storage.list_keys()) == []
    assert list(storage.list_keys("escape/")) == []
    assert list(storage.list_keys("escape")) == []
    assert sorted(path.name for path in outside.iterdir()) == ["secret.png"]


def test_a_root_reached_through_a_symlink_works(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    storage = LocalFolderStorage(tmp_path / "link")
    storage.put("images/a.png", b"1", PNG)
    assert (real / "images" / "a.png").read_bytes() == b"1"
    assert list(storage.list_keys()) == ["images/a.png"]


def test_describe_names_the_folder(tmp_path):
    assert str(tmp_path) in LocalFolderStorage(tmp_path).describe()


# Content keys.


def test_content_key_shape():
    data = b"some image bytes"
    digest = hashlib.sha256(data).hexdigest()
    assert content_key(data, ".png") == f"images/{digest[:2]}/{digest[2:4]}/{digest}.png"
    shape = r"images/[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{64}\.png"
    assert re.fullmatch(shape, content_key(data, ".png"))


def test_content_key_is_deterministic_and_content_addressed():
    assert content_key(b"a", ".png") == content_key(b"a", ".png")
    assert content_key(b"a", ".png") != content_key(b"b", ".png")
    assert content_key(b"a", "png") == content_key(b"a", ".png")


def test_content_key_namespace_and_suffix():
    digest = hashlib.sha256(b"a").hexdigest()
    assert content_key(b"a", ".webp", namespace="thumbs/small") == (
        f"thumbs/small/{digest[:2]}/{digest[2:4]}/{digest}.webp"
    )
    assert content_key(b"a", "").endswith(f"/{digest}")
    assert content_key(b"a", ".tar.gz").endswith(f"/{digest}.tar.gz")


@pytest.mark.parametrize("suffix", ["./png", ".p/ng", ". png", "..", ".png/"])
def test_content_key_refuses_odd_suffixes(suffix):
    with pytest.raises(InvalidInput) as caught:
        content_key(b"a", suffix)
    assert caught.value.field == "suffix"


@pytest.mark.parametrize("namespace", ["", "/images", "../images", "images/", ".cache"])
def test_content_key_refuses_bad_namespaces(namespace):
    with pytest.raises(InvalidInput) as caught:
        content_key(b"a", ".png", namespace=namespace)
    assert caught.value.field == "namespace"


# Storage URLs.


def test_open_storage_file_url(tmp_path):
    storage = open_storage(f"file://{tmp_path}/objects")
    assert isinstance(storage, LocalFolderStorage)
    assert storage.root == tmp_path / "objects"


def test_open_storage_takes_file_paths_literally(tmp_path):
    # Settings paste `home` into file://{home}/objects unescaped, so %, # and spaces are
    # part of the folder name.
    storage = open_storage(f"file://{tmp_path}/my 100%20 #1?/objects")
    assert storage.root == tmp_path / "my 100%20 #1?" / "objects"


def test_open_storage_s3_url():
    storage = open_storage(
        "s3://farm-assets/renders/v1",
        s3_endpoint_url="http://127.0.0.1:9",
        s3_region="eu-west-1",
        s3_access_key_id="key",
        s3_secret_access_key="secret",
    )
    assert isinstance(storage, S3Storage)
    assert storage.bucket == "farm-assets"
    assert storage.prefix == "renders/v1/"
    assert storage.client.meta.region_name == "eu-west-1"
    assert storage.client.meta.endpoint_url == "http://127.0.0.1:9"
    assert storage.client.meta.config.s3["addressing_style"] == "path"
    assert storage.client.meta.config.retries["mode"] == "standard"
    assert "secret" not in storage.describe() and "secret" not in repr(storage)


def test_open_storage_s3_without_prefix_and_with_empty_settings():
    # The settings file uses "" for "not set".
    storage = open_storage(
        "s3://farm-assets", s3_endpoint_url="", s3_region="us-east-1",
        s3_access_key_id="", s3_secret_access_key="",
    )
    assert storage.bucket == "farm-assets"
    assert storage.prefix == ""
    assert storage.endpoint_url is None
    assert storage.client.meta.config.s3["addressing_style"] == "auto"
    assert storage.describe() == "s3://farm-assets/"


@pytest.mark.parametrize(
    "url, hint",
    [
        ("", "empty"),
        ("/var/lib/farm/objects", "unsupported"),
        ("objects", "unsupported"),
        ("http://example.com/bucket", "unsupported"),
        ("gs://bucket/prefix", "unsupported"),
        ("file://objects", "absolute"),
        ("file:objects", "absolute"),
        ("file://localhost/var/objects", "absolute"),
        ("file:///", "root"),
        ("s3://", "no bucket"),
        ("s3:///renders", "no bucket"),
        ("s3://Not_A_Bucket/x", "bucket name"),
        ("s3://ab", "bucket name"),
        ("s3://bucket/../x", "'..'"),
        ("s3://bucket/a//b", "empty part"),
        ("s3://key:secret@bucket/x", "credentials"),
        ("s3://bucket/x?versionId=1", "'?'"),
    ],
)
def test_open_storage_refuses_bad_urls(url, hint):
    with pytest.raises(InvalidInput) as caught:
        open_storage(url)
    assert caught.value.field == "FARM_STORAGE_URL"
    assert hint in caught.value.message
    if "secret" in url:
        assert "secret" not in str(caught.value)


def test_open_storage_wants_both_halves_of_a_key():
    with pytest.raises(InvalidInput) as caught:
        open_storage("s3://bucket", s3_access_key_id="key")
    assert caught.value.field == "FARM_S3_SECRET_ACCESS_KEY"
    with pytest.raises(InvalidInput) as caught:
        open_storage("s3://bucket", s3_secret_access_key="secret")
    assert caught.value.field == "FARM_S3_ACCESS_KEY_ID"
