"""``auditlake verify``: check a local store folder or a bucket offline against its signed digests."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

EXIT_FINDINGS = 1
EXIT_ERROR = 2
FIGURES = ("verified", "modified", "missing", "unexpected", "chain_breaks", "signature_failures",
           "pending", "expired", "deleted", "legacy", "predates_chain", "digests")
SHOWN_PROBLEMS = 20


def register(subparsers: Any) -> None:
    """Add the ``verify`` subcommand."""
    parser = subparsers.add_parser(
        "verify", help="verify stored audit files against the signed digest chain (offline)",
        description="Read the store directly (a local folder or an S3 bucket) and check every file against the "
                    "signed, chained digests, trusting only the public key(s) given. Exits 0 when nothing is "
                    "wrong, 1 on any finding (modified, missing, unexpected, chain break, signature failure), "
                    "2 when the store or key cannot be read.")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--local", type=Path, metavar="PATH", help="the local store root (AUDIT_SERVICE_LOCAL_PATH)")
    where.add_argument("--s3-bucket", metavar="BUCKET", help="the bucket of the S3 backend")
    parser.add_argument("--s3-prefix", default="audit", help="key prefix (default: audit)")
    parser.add_argument("--s3-endpoint-url", default=None, help="S3-compatible endpoint (default: AWS)")
    parser.add_argument("--s3-region", default="us-east-1", help="region (default: us-east-1)")
    parser.add_argument("--public-key", type=Path, action="append", required=True, metavar="FILE",
                        help="a trusted Ed25519 public key (PEM); repeat for several writers")
    parser.add_argument("--since", help="check only files with events from this ISO-8601 time")
    parser.add_argument("--until", help="check only files with events up to this ISO-8601 time")
    parser.add_argument("--json", action="store_true", help="print the whole report as JSON")
    parser.set_defaults(handler=run)


def render(report: dict[str, Any], where: str) -> str:
    """The human-readable report."""
    verdict = "OK" if report["ok"] else "PROBLEMS FOUND"
    lines = [f"auditlake verify {where}: {verdict}",
             "  " + ", ".join(f"{name.replace('_', ' ')} {report[name]}" for name in FIGURES)]
    for writer, chain in report["writers"].items():
        lines.append(f"  writer {writer}: {chain['digests']} digests, newest #{chain['newest_digest']} "
                     f"ending {chain['newest_end']}, key {chain['key_fingerprint']}")
    if report["first_problem"]:
        first = report["first_problem"]
        lines.append(f"  first problem: {first['finding']}: {first['item']}: {first['detail']}")
        for problem in report["problems"][1:SHOWN_PROBLEMS]:
            lines.append(f"    {problem['finding']}: {problem['item']}: {problem['detail']}")
        if len(report["problems"]) > SHOWN_PROBLEMS:
            lines.append(f"    ... {len(report['problems']) - SHOWN_PROBLEMS} more (see --json)")
    if report["pending"]:
        lines.append(f"  {report['pending']} files are newer than the newest digest (pending: the next digest covers "
                     "them; verify through the service to check them against the journal)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``auditlake verify``."""
    from botocore.exceptions import BotoCoreError, ClientError

    from ingest.evidence_sources import LocalSource, S3Source, verify_store
    from shared.events import format_ts, parse_iso

    try:
        keys = [path.read_bytes() for path in args.public_key]
        since = format_ts(parse_iso(args.since)) if args.since else None
        until = format_ts(parse_iso(args.until)) if args.until else None
    except (OSError, ValueError) as exc:
        print(f"auditlake verify: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if args.local is not None:
        if not args.local.is_dir():
            print(f"auditlake verify: {args.local} is not a directory", file=sys.stderr)
            return EXIT_ERROR
        source: Any = LocalSource(args.local)
        where = str(args.local)
    else:
        import boto3

        client = boto3.client("s3", endpoint_url=args.s3_endpoint_url, region_name=args.s3_region)
        source = S3Source(client, args.s3_bucket, args.s3_prefix.strip("/"))
        where = f"s3://{args.s3_bucket}/{args.s3_prefix.strip('/')}"
    try:
        report = verify_store(source, keys, since, until)
    except ValueError as exc:
        print(f"auditlake verify: a --public-key is not an Ed25519 public key in PEM: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except (ClientError, BotoCoreError, OSError) as exc:
        print(f"auditlake verify: cannot read the store: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(json.dumps(report, ensure_ascii=False) if args.json else render(report, where))
    return 0 if report["ok"] else EXIT_FINDINGS
