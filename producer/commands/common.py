"""Options and argument types shared by the ``auditlake`` subcommands."""

from __future__ import annotations

import argparse

from producer.options import DEFAULT_URL, TOKEN_ENV, URL_ENV, default_token, default_url


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1: {text!r}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be > 0: {text!r}")
    return value


def add_service_options(parser: argparse.ArgumentParser) -> None:
    """``--url`` and ``--token``, defaulting to the environment."""
    parser.add_argument(
        "--url",
        default=default_url(),
        help=f"service base URL (default: ${URL_ENV} or {DEFAULT_URL})",
    )
    parser.add_argument(
        "--token",
        default=default_token(),
        help=f"bearer token (default: ${TOKEN_ENV})",
    )
