"""The writer's Ed25519 signing key: read from AUDIT_SERVICE_SIGNING_KEY_FILE, or generated owner-only."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared import digests as d
from shared.errors import ConfigError
from writer.fsutil import fsync_dir

log = logging.getLogger("auditlake.writer.signing_key")
VARIABLE = "AUDIT_SERVICE_SIGNING_KEY_FILE"


def load_or_create(path: Path) -> Ed25519PrivateKey:
    """The private key in ``path``; a new one written there (mode 0600, never overwritten) when absent."""
    try:
        pem = path.read_bytes()
    except FileNotFoundError:
        pem = _create(path)
    except OSError as exc:
        raise ConfigError(VARIABLE, f"cannot read {path}: {exc.strerror}") from None
    try:
        key = d.load_private(pem)
    except ValueError as exc:
        raise ConfigError(VARIABLE, f"{path} is not an unencrypted Ed25519 private key in PEM: {exc}") from None
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("signing key file is readable by others; make it owner-only (chmod 600)",
                    extra={"path": str(path), "mode": oct(stat.S_IMODE(mode))})
    return key


def _create(path: Path) -> bytes:
    """Write a new key through a temp file and link it into place, so a concurrent or torn write never wins."""
    old_umask = os.umask(0o077)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    finally:
        os.umask(old_umask)
    pem = d.generate_private_pem()
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return path.read_bytes()
    finally:
        tmp.unlink()
    fsync_dir(path.parent)
    log.warning("generated a new signing key for digests", extra={"path": str(path)})
    return pem
