"""Error types shared by both processes.

    AuditLakeError
    ├── ConfigError          an environment variable is missing or invalid (names the variable)
    ├── EventError           an event or request body breaks the event contract (a 4xx)
    └── WireError            bytes on the socket break the framing protocol
        ├── FrameTooLarge    a frame announces a payload over the negotiated maximum
        ├── UnsupportedVersion  a frame of a protocol version this build does not speak
        ├── CorruptFrame     bad magic, unknown kind or checksum mismatch
        └── TruncatedFrame   the stream ended inside a frame
"""


class AuditLakeError(Exception):
    """Base of every error raised by auditlake code."""


class ConfigError(AuditLakeError):
    """A setting taken from the environment is missing or invalid."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable}: {message}")
        self.variable = variable


class EventError(AuditLakeError):
    """An event or a request body breaks the event contract."""


class WireError(AuditLakeError):
    """The bytes on the ingest-writer socket break the framing protocol."""


class FrameTooLarge(WireError):
    """A frame announces a payload larger than the maximum frame size."""


class UnsupportedVersion(WireError):
    """A frame carries a protocol version this build does not speak."""


class CorruptFrame(WireError):
    """A frame has a bad magic, an unknown kind or a checksum mismatch."""


class TruncatedFrame(WireError):
    """The stream ended in the middle of a frame."""
