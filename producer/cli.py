"""The ``auditlake`` command line: argparse subcommands, each registered by its own module."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMAND_MODULES: tuple[str, ...] = (
    "producer.commands.send",
    "producer.commands.query",
    "producer.commands.tail",
    "producer.commands.status",
    "producer.commands.verify",
)


def build_parser(modules: Sequence[str] = COMMAND_MODULES) -> argparse.ArgumentParser:
    """The top-level parser; every module in ``modules`` adds its subcommand through ``register``."""
    parser = argparse.ArgumentParser(prog="auditlake", description="Client tools for the auditlake audit-log service.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in modules:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand and return its exit status (0 success, 1 something not done, 2 usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        print("auditlake: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
