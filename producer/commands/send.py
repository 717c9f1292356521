"""``auditlake send [FILE]``: deliver NDJSON events (plain or gzip) from a file or stdin, dropping none."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gzip
import io
import json
import re
import sys
from collections.abc import Iterator
from typing import IO, Any

from producer.commands.common import add_service_options, positive_float, positive_int
from producer.encode import make_dumps
from producer.events import Clock, InvalidEvent, prepare_event
from producer.intake import BODY_OVERHEAD
from producer.options import ProducerOptions
from producer.transport import Transport, make_session

GZIP_MAGIC = b"\x1f\x8b"
SKIPPABLE_STATUS = frozenset({400, 413, 422})
EVENT_INDEX = re.compile(r"\bevent (\d+)\b")


def register(subparsers: Any) -> None:
    """Add the ``send`` subcommand."""
    parser = subparsers.add_parser(
        "send",
        help="send NDJSON audit events from a file or stdin",
        description="Send NDJSON audit events (one JSON object per line; .gz accepted) and wait for every "
        "batch to be accepted. Exits 1 and reports counts when anything was not delivered.",
    )
    parser.add_argument("file", nargs="?", default="-", metavar="FILE", help="NDJSON or NDJSON.gz file; '-' or none: stdin")
    add_service_options(parser)
    parser.add_argument("--batch-size", type=positive_int, default=100, help="events per request (default 100)")
    parser.add_argument("--max-attempts", type=positive_int, default=5, help="tries per batch (default 5)")
    parser.add_argument("--timeout", type=positive_float, default=10.0, help="seconds per request (default 10)")
    parser.set_defaults(handler=run)


@dataclasses.dataclass
class Report:
    """What happened to the lines of the input."""

    lines: int = 0
    sent: int = 0
    rejected: int = 0
    unsent: int = 0
    bad: int = 0
    read_error: str = ""

    @property
    def ok(self) -> bool:
        """Whether every event line was delivered."""
        return self.sent == self.lines and not self.read_error

    def summary(self) -> str:
        text = (
            f"{self.lines} events read: {self.sent} sent, {self.rejected} rejected by the service, "
            f"{self.unsent} not sent, {self.bad} bad lines"
        )
        return text + (f"; input error: {self.read_error}" if self.read_error else "")


def open_input(path: str) -> IO[bytes]:
    """A binary stream of the NDJSON text: the file or stdin, transparently gunzipped."""
    raw: IO[bytes] = sys.stdin.buffer if path == "-" else open(path, "rb")
    buffered = raw if hasattr(raw, "peek") else io.BufferedReader(raw)  # type: ignore[arg-type]
    if buffered.peek(2)[:2] == GZIP_MAGIC:  # type: ignore[attr-defined]
        return gzip.GzipFile(fileobj=buffered, mode="rb")  # type: ignore[return-value]
    return buffered


def run(args: argparse.Namespace) -> int:
    """Entry point of ``auditlake send``."""
    try:
        options = ProducerOptions(
            base_url=args.url,
            token=args.token,
            batch_size=args.batch_size,
            max_attempts=args.max_attempts,
            total_timeout=args.timeout,
            connect_timeout=min(args.timeout, 5.0),
            retry_budget=max(60.0, args.timeout * args.max_attempts),
            backoff_max=5.0,
        )
    except ValueError as exc:
        print(f"auditlake send: {exc}", file=sys.stderr)
        return 2
    name = "<stdin>" if args.file == "-" else args.file
    try:
        stream = open_input(args.file)
    except OSError as exc:
        print(f"auditlake send: cannot open {name}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    with stream:
        report = asyncio.run(Sender(options, name).send_all(stream))
    print(report.summary(), file=sys.stderr)
    return 0 if report.ok else 1


class Sender:
    """Reads numbered lines, sends them in batches one after the other, and reports every loss."""

    def __init__(self, options: ProducerOptions, name: str):
        self.options = options
        self.name = name
        self.report = Report()
        self._dumps = make_dumps()
        self._clock = Clock()

    def _complain(self, message: str) -> None:
        print(f"{self.name}:{message}", file=sys.stderr)

    def _events(self, stream: IO[bytes]) -> Iterator[tuple[int, bytes]]:
        lineno = 0
        try:
            for lineno, line in enumerate(stream, 1):
                if not line.strip():
                    continue
                self.report.lines += 1
                try:
                    parsed = json.loads(line)
                    encoded = self._dumps(prepare_event(parsed, self._clock))
                except (ValueError, InvalidEvent) as exc:
                    self.report.bad += 1
                    self._complain(f"{lineno}: bad line: {_reason(exc)}")
                    continue
                yield lineno, encoded
        except (OSError, EOFError) as exc:
            self.report.read_error = f"after line {lineno}: {exc}"
            self._complain(f"{lineno}: cannot read further: {exc}")

    def _batches(self, stream: IO[bytes]) -> Iterator[list[tuple[int, bytes]]]:
        batch: list[tuple[int, bytes]] = []
        size = BODY_OVERHEAD
        for lineno, encoded in self._events(stream):
            if batch and (len(batch) >= self.options.batch_size or size + len(encoded) + 1 > self.options.max_batch_bytes):
                yield batch
                batch, size = [], BODY_OVERHEAD
            batch.append((lineno, encoded))
            size += len(encoded) + 1
        if batch:
            yield batch

    async def send_all(self, stream: IO[bytes]) -> Report:
        """Send every event of ``stream``; stop at the first batch the service could not take."""
        async with make_session(self.options) as session:
            transport = Transport(self.options, session)
            batches = self._batches(stream)
            for batch in batches:
                await asyncio.sleep(transport.pause_remaining())
                result = await transport.send([encoded for _, encoded in batch])
                lines = [lineno for lineno, _ in batch]
                if result.outcome == "sent":
                    self.report.sent += len(batch)
                    continue
                where = f"{lines[0]}-{lines[-1]}" if len(lines) > 1 else f"{lines[0]}"
                if result.outcome == "rejected" and result.status in SKIPPABLE_STATUS:
                    self.report.rejected += len(batch)
                    self._complain(f"{_culprit(lines, result.reason) or where}: rejected (HTTP {result.status}): {result.reason}")
                    continue
                self.report.unsent += len(batch)
                self._complain(f"{where}: not sent: {_status(result.status)}{result.reason}")
                for rest in batches:
                    self.report.unsent += len(rest)
                break
        return self.report


def _reason(exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    if isinstance(exc, InvalidEvent):
        return str(exc)
    if isinstance(exc, json.JSONDecodeError):
        return f"not JSON ({exc.msg} at column {exc.colno})"
    return str(exc)


def _culprit(lines: list[int], detail: str) -> str:
    """The line a service message such as ``event 3: ...`` points at, when it names one."""
    match = EVENT_INDEX.search(detail)
    if match and int(match.group(1)) < len(lines):
        return str(lines[int(match.group(1))])
    return ""


def _status(status: int | None) -> str:
    return f"HTTP {status}: " if status is not None else ""
