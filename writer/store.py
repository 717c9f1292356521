"""The storage backend interface the flusher publishes through (local files or S3 objects)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol

from writer.batches import FlushBatch


@dataclasses.dataclass(frozen=True)
class PublishedFile:
    """One file or object a publish wrote, with what a manifest needs to vouch for it."""

    name: str
    sha256: str
    size: int
    events: int
    first_ts: str
    last_ts: str
    sidecar_sha256: str | None = None  # local files: the Parquet sidecar ``<name>.parquet`` the manifest covers too
    sidecar_size: int = 0


@dataclasses.dataclass(frozen=True)
class EncodedFile:
    """One file or object of a flush, encoded (in the encoder process) and ready to be written."""

    name: str
    body: bytes | memoryview  # a view (``writer.encoder_channel``) once it came from the encoder process
    sidecar: bytes | memoryview | None  # local files: the Parquet sidecar written beside the file
    published: PublishedFile


@dataclasses.dataclass(frozen=True)
class PublishResult:
    """What one publish wrote."""

    files: list[PublishedFile]

    @property
    def bytes_written(self) -> int:
        """Bytes of every file written."""
        return sum(item.size for item in self.files)


class Store(Protocol):
    """A backend: encodes a spool range into files under deterministic names, writes them, applies retention."""

    retention_days: int

    def prepare(self) -> None:
        """Check (and where allowed create) the destination at start; raise on a bad configuration."""

    def encoder(self) -> Callable[[FlushBatch], list[EncodedFile]]:
        """The batch's files, encoded: a picklable function the flush's encoder process calls."""

    def write(self, files: list[EncodedFile]) -> PublishResult:
        """Write encoded files under their names (the flush thread); idempotent."""

    def remove(self, names: list[str]) -> None:
        """Delete stale copies of a range being redone."""

    def purge(self) -> tuple[int, int]:
        """Apply retention; return (files or objects, bytes) deleted."""

    def probe(self) -> None:
        """Check the storage now (worker thread; may block on I/O) and keep the result for health()."""

    def health(self) -> dict[str, Any]:
        """The storage block of status from the last probe: backend, status, detail and figures (no I/O)."""
