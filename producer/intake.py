"""The caller-side half of ``emit``: validate, encode and queue one event without any I/O."""

from __future__ import annotations

from typing import Any

from producer.buffer import EventBuffer
from producer.encode import Dumps, make_dumps
from producer.events import Clock, InvalidEvent, prepare_event
from producer.options import ProducerOptions

BODY_OVERHEAD = len(b'{"events":[]}')


class Intake:
    """Turns an emitted mapping into encoded bytes in the buffer, or counts it as invalid."""

    def __init__(self, options: ProducerOptions, buffer: EventBuffer, dumps: Dumps | None = None):
        self.buffer = buffer
        self._dumps = dumps or make_dumps()
        self._clock = Clock()
        self._max_event_bytes = options.max_batch_bytes - BODY_OVERHEAD

    def put(self, event: Any) -> tuple[bool, bool]:
        """(accepted, wake the worker); never raises for a bad event."""
        try:
            data = self._dumps(prepare_event(event, self._clock))
        except InvalidEvent as exc:
            reason = str(exc)
        except Exception as exc:
            reason = f"cannot encode event: {type(exc).__name__}"
        else:
            if len(data) <= self._max_event_bytes:
                return self.buffer.add(data)
            reason = f"event of {len(data)} bytes exceeds max_batch_bytes"
        self.buffer.reject(reason[:300])
        return False, False

    def put_safely(self, event: Any) -> tuple[bool, bool]:
        """``put``, counting any unexpected internal error as an invalid event instead of raising."""
        try:
            return self.put(event)
        except Exception:
            try:
                self.buffer.reject("internal error while queueing the event")
            except Exception:
                pass
            return False, False
