"""The embedded broker's transport: a message file appears only once it is whole, and a consumer
survives a file that is not a message (kombu's own transport lets a consumer take a message file
before it is written, and the JSON error then stops the worker's consumer for good)."""

from __future__ import annotations

import logging
import threading
from queue import Empty

import pytest
from kombu import Connection

import farm.queue.embedded_broker as embedded_broker
from farm.queue.app import create_celery_app
from farm.settings import load_settings


@pytest.fixture
def channel(tmp_path):
    folder = tmp_path / "broker"
    folder.mkdir()
    connection = Connection("filesystem://", transport=embedded_broker.Transport, transport_options={
        "data_folder_in": str(folder), "data_folder_out": str(folder), "control_folder": str(folder / "control")})
    channel = connection.channel()
    channel.folder = folder
    channel.client = connection
    yield channel
    connection.release()


def test_a_message_file_appears_under_its_queue_name_only_once_written(channel, monkeypatch):
    def messages():
        return {p.name for p in channel.folder.iterdir() if p.name.endswith(".msg")}

    appeared_while_writing = []
    real_dumps = embedded_broker.dumps

    def dumps_and_look(payload):
        appeared_while_writing.extend(messages() - before)
        return real_dumps(payload)

    monkeypatch.setattr(embedded_broker, "dumps", dumps_and_look)
    for body in ("render 7", "render 8"):
        before = messages()
        channel._put("sd1", {"body": body})
    # While a message was written, no file under a message name existed for a consumer to take.
    assert appeared_while_writing == []
    names = sorted(p.name for p in channel.folder.iterdir() if p.is_file())
    assert len(names) == 2 and all(name.endswith(".sd1.msg") for name in names)
    assert channel._size("sd1") == 2
    assert [channel._get("sd1")["body"], channel._get("sd1")["body"]] == ["render 7", "render 8"]


def test_a_consumer_drops_a_file_that_is_not_a_message_and_goes_on(channel, caplog):
    # Named to sort before any message the channel writes, so the consumer meets them first.
    (channel.folder / f"{1:020d}_half-written.sd1.msg").write_bytes(b"")
    (channel.folder / f"{2:020d}_garbled.sd1.msg").write_bytes(b'{"body": ')
    channel._put("sd1", {"body": "render 9"})
    with caplog.at_level(logging.ERROR, logger="farm.queue.embedded_broker"):
        assert channel._get("sd1")["body"] == "render 9"
    assert len([r for r in caplog.records if "not a message" in r.getMessage()]) == 2
    assert not [p for p in channel.folder.iterdir() if p.is_file()]
    with pytest.raises(Empty):
        channel._get("sd1")


def test_messages_written_while_a_consumer_polls_all_arrive_whole(channel):
    count = 300
    received, errors = [], []

    def consume():
        consumer = channel.client.channel()
        while len(received) < count:
            try:
                received.append(consumer._get("sd1")["body"])
            except Empty:
                continue
            except Exception as error:
                errors.append(error)
                return

    thread = threading.Thread(target=consume)
    thread.start()
    for index in range(count):
        channel._put("sd1", {"body": index})
    thread.join(timeout=30)
    assert not errors and sorted(received) == list(range(count))


def test_the_farms_embedded_celery_app_uses_this_transport(tmp_path):
    app = create_celery_app(load_settings({"FARM_HOME": str(tmp_path)}))
    with app.connection_for_write() as connection:
        assert connection.get_transport_cls() is embedded_broker.Transport
    with app.connection_for_read() as connection:
        assert connection.get_transport_cls() is embedded_broker.Transport
