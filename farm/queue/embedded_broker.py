"""The embedded broker: kombu's filesystem transport, with messages that appear whole.

kombu's filesystem transport creates a message file under its final name, then writes it. A
consumer polling the folder (every embedded_broker_poll_seconds) can take the file between the
two: it moves it away, reads nothing, and the JSON error ends the worker's consumer for good,
silently, so that every later render stays queued (seen as a `farm up` job stuck at 0% under
load). Here a message is written under a name no consumer looks at and renamed into place, which
is atomic on one filesystem; and a consumer that meets a file that is not a message anyway (one
written by something else) logs it, drops it and goes on.
"""

from __future__ import annotations

import logging
import os
import uuid
from contextlib import suppress
from time import monotonic_ns

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

log = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".part"  # a message being written: "<ns>_<uuid>.<queue>.msg.part", never consumed


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        # kombu's consumers take messages in the order of their names. kombu names a message by
        # the millisecond, so two sent within one millisecond came out in random order; this
        # prefix is in nanoseconds, zero-padded so that names sort as numbers do.
        final = os.path.join(self.data_folder_out, f"{monotonic_ns():020d}_{uuid.uuid4()}.{queue}.msg")
        partial = final + PARTIAL_SUFFIX
        try:
            with open(partial, "wb") as file:
                file.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as error:
            with suppress(OSError):
                os.remove(partial)
            raise ChannelError(f"Cannot add file {final!r} to directory") from error

    def _get(self, queue):
        while True:  # each failed read has removed its file, so this ends (with Empty at the latest)
            try:
                return super()._get(queue)
            except ValueError as error:
                log.error("embedded broker: dropped a message file of queue %s that is not a message: %s",
                          queue, error)


class Transport(filesystem.Transport):
    Channel = Channel
