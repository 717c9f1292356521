"""Emit audit events to auditlake from any Python service without ever blocking it."""

from producer.aio import AsyncAuditProducer
from producer.buffer import ProducerStats
from producer.events import NAMED_FIELDS, InvalidEvent, prepare_event
from producer.options import ProducerOptions
from producer.threaded import AuditProducer

__all__ = [
    "NAMED_FIELDS",
    "AsyncAuditProducer",
    "AuditProducer",
    "InvalidEvent",
    "ProducerOptions",
    "ProducerStats",
    "prepare_event",
]
