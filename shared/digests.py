"""Tamper-evidence contract: manifest entries, signed digests, their canonical bytes, names and chain rules.

A writer appends one **entry** per object it publishes (and per object it deletes) to its manifest journal;
each entry names the hash of the previous one (``prev``), so the entries of a writer form one chain.
Every interval the writer publishes a **digest**: the entries since the previous digest, the hash of the
previous digest's bytes, and an Ed25519 signature over the canonical form of everything else. A small
signed **pointer** (``latest.json``) names the newest digest, so deleting the newest digests shows too.

Canonical bytes are ``orjson`` with sorted keys and no whitespace (UTF-8). Entry hash = SHA-256 of the
entry's canonical bytes; digest hash = SHA-256 of the digest object's bytes exactly as stored.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

DIGEST_FORMAT = "auditlake-digest/1"
POINTER_FORMAT = "auditlake-digest-pointer/1"
DIGEST_DIR = "_digests"
PUBLIC_KEY_NAME = "public-key.pem"
POINTER_NAME = "latest.json"
GENESIS = "0" * 64
PUBLISH = "publish"
DELETE = "delete"
SIDECAR_SUFFIX = ".parquet"
EXPIRY_RECORDED = "recorded"      # local: every deletion is an entry of the chain
EXPIRY_LIFECYCLE = "lifecycle"    # s3: the bucket's lifecycle rule expires objects unrecorded
# Files in the writer's spool directory (read by ingest for live verification).
EVIDENCE_DIR = "evidence"
JOURNAL_NAME = "journal.ndjson"
STATE_NAME = "state.json"
PENDING_NAME = "digest-pending.json"
DEFAULT_KEY_NAME = "signing-key.pem"
_DIGEST_FILE = re.compile(r"^digest-(?P<number>\d{12})-(?P<end>\d{8}T\d{6}Z)\.json$")


class SignatureError(Exception):
    """A digest or pointer is unreadable, unsigned, or not signed by a trusted key."""


def canonical(document: Any) -> bytes:
    """The canonical bytes of a JSON document: sorted keys, no whitespace, UTF-8."""
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of bytes."""
    return hashlib.sha256(data).hexdigest()


def entry_hash(entry: dict[str, Any]) -> str:
    """The hash of a manifest entry: what the next entry's ``prev`` names."""
    return sha256_hex(canonical(entry))


def compact(iso: str) -> str:
    """``2026-11-29T05:00:01.123456Z`` → ``20261129T050001Z``."""
    return iso[0:4] + iso[5:7] + iso[8:10] + "T" + iso[11:13] + iso[14:16] + iso[17:19] + "Z"


# -- names ----------------------------------------------------------------------------------------


def writer_dir(writer_id: str) -> str:
    """``_digests/<writer>/``, relative to the store root or the bucket prefix."""
    return f"{DIGEST_DIR}/{writer_id}/"


def digest_name(writer_id: str, number: int, end: str) -> str:
    """``_digests/<writer>/digest-<number, 12 digits>-<end, compact>.json``."""
    return f"{writer_dir(writer_id)}digest-{number:012d}-{compact(end)}.json"


def pointer_name(writer_id: str) -> str:
    """The signed pointer to a writer's newest digest."""
    return f"{writer_dir(writer_id)}{POINTER_NAME}"


def public_key_name(writer_id: str) -> str:
    """Where a writer publishes its public key (a convenience copy; verify with a key you trust)."""
    return f"{writer_dir(writer_id)}{PUBLIC_KEY_NAME}"


def parse_digest_name(name: str) -> tuple[str, int, str] | None:
    """(writer id, number, compact end) of a digest's name; None for any other name."""
    parts = name.split("/")
    if len(parts) != 3 or parts[0] != DIGEST_DIR:
        return None
    match = _DIGEST_FILE.match(parts[2])
    if match is None:
        return None
    return parts[1], int(match["number"]), match["end"]


def expected_objects(entry: dict[str, Any]) -> list[tuple[str, str, int]]:
    """(name, sha256, size) of every stored object a publish entry vouches for: the file and its sidecar."""
    found = [(entry["key"], entry["sha256"], int(entry["size"]))]
    if entry.get("sidecar_sha256"):
        found.append((entry["key"] + SIDECAR_SUFFIX, entry["sidecar_sha256"], int(entry["sidecar_size"])))
    return found


# -- entries --------------------------------------------------------------------------------------


def publish_entry(n: int, prev: str, writer_id: str, at: str, key: str, sha256: str, size: int, events: int,
                  first_ts: str, last_ts: str, first_seq: int, last_seq: int,
                  sidecar: tuple[str, int] | None = None) -> dict[str, Any]:
    """The entry of one published file or object (keys relative to the store root or bucket prefix)."""
    entry: dict[str, Any] = {
        "n": n, "prev": prev, "writer_id": writer_id, "kind": PUBLISH, "at": at, "key": key,
        "sha256": sha256, "size": size, "events": events, "first_ts": first_ts, "last_ts": last_ts,
        "first_seq": first_seq, "last_seq": last_seq,
    }
    if sidecar is not None:
        entry["sidecar_sha256"], entry["sidecar_size"] = sidecar
    return entry


def delete_entry(n: int, prev: str, writer_id: str, at: str, key: str, reason: str) -> dict[str, Any]:
    """The entry of one deleted object: ``retention`` (expired by age) or ``rewrite`` (a redone range)."""
    return {"n": n, "prev": prev, "writer_id": writer_id, "kind": DELETE, "at": at, "key": key, "reason": reason}


def parse_journal(data: bytes) -> list[dict[str, Any]]:
    """The complete entries of a journal file; a torn last line (a crash mid-append) is left out."""
    entries = []
    for line in data.split(b"\n"):
        if not line:
            continue
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            break
        if not isinstance(entry, dict) or "n" not in entry:
            break
        entries.append(entry)
    return entries


# -- keys and signatures --------------------------------------------------------------------------


def generate_private_pem() -> bytes:
    """A new Ed25519 private key, PKCS#8 PEM."""
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def load_private(pem: bytes) -> Ed25519PrivateKey:
    """An Ed25519 private key from PEM; ValueError for anything else."""
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("not an Ed25519 private key")
    return key


def public_pem(private: Ed25519PrivateKey) -> bytes:
    """The SubjectPublicKeyInfo PEM of a private key's public half."""
    return private.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public(pem: bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM; ValueError for anything else."""
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def fingerprint(public: Ed25519PublicKey) -> str:
    """``ed25519:<hex SHA-256 of the raw 32-byte key>``."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + sha256_hex(raw)


def sign(document: dict[str, Any], private: Ed25519PrivateKey) -> bytes:
    """The stored bytes of a document: its canonical form with ``key_fingerprint`` and ``signature`` added."""
    body = {key: value for key, value in document.items() if key != "signature"}
    body["key_fingerprint"] = fingerprint(private.public_key())
    signature = private.sign(canonical(body))
    return canonical({**body, "signature": base64.b64encode(signature).decode()})


def open_signed(data: bytes, trusted: dict[str, Ed25519PublicKey]) -> dict[str, Any]:
    """The document of signed bytes when a key in ``trusted`` (by fingerprint) signed it; else SignatureError."""
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise SignatureError("not valid JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get("signature"), str):
        raise SignatureError("no signature")
    key = trusted.get(str(document.get("key_fingerprint")))
    if key is None:
        raise SignatureError(f"signed by an untrusted key ({document.get('key_fingerprint')})")
    body = {name: value for name, value in document.items() if name != "signature"}
    try:
        key.verify(base64.b64decode(document["signature"], validate=True), canonical(body))
    except (InvalidSignature, ValueError):
        raise SignatureError("signature does not match the content") from None
    return document


def pointer(writer_id: str, number: int, name: str, digest_sha256: str, end: str) -> dict[str, Any]:
    """The unsigned pointer document naming a writer's newest digest."""
    return {"format": POINTER_FORMAT, "writer_id": writer_id, "number": number, "name": name,
            "sha256": digest_sha256, "end": end}
