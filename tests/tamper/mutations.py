"""Ways an attacker can change a local store, each with the finding verification must report for it."""

from __future__ import annotations

import dataclasses
import gzip
import random
import shutil
from collections.abc import Callable
from pathlib import Path

import orjson

from shared import digests as d
from shared import layout


@dataclasses.dataclass(frozen=True)
class Expect:
    """The finding a mutation must produce, and a part of the item it must name."""

    finding: str
    item: str


Mutation = Callable[[Path, random.Random], Expect]
WRITER = "w1"


def _data_files(root: Path) -> list[Path]:
    return sorted(path for directory in layout.all_day_dirs(root) for path in directory.iterdir()
                  if layout.describe(path) is not None)


def _sidecars(root: Path) -> list[Path]:
    return sorted(path for directory in layout.all_day_dirs(root) for path in directory.iterdir()
                  if layout.is_sidecar(path))


def _digests(root: Path) -> list[Path]:
    return sorted((root / d.DIGEST_DIR / WRITER).glob("digest-*.json"))


def _rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def _lines(path: Path) -> list[bytes]:
    return gzip.decompress(path.read_bytes()).splitlines()


def _flip_byte(path: Path, rng: random.Random) -> None:
    data = bytearray(path.read_bytes())
    index = rng.randrange(len(data))
    data[index] ^= 1 << rng.randrange(8)
    path.write_bytes(bytes(data))


def _attacker_key() -> object:
    return d.load_private(d.generate_private_pem())


def edit_byte(root: Path, rng: random.Random) -> Expect:
    path = rng.choice(_data_files(root))
    _flip_byte(path, rng)
    return Expect("modified", _rel(root, path))


def edit_sidecar(root: Path, rng: random.Random) -> Expect:
    path = rng.choice(_sidecars(root))
    _flip_byte(path, rng)
    return Expect("modified", _rel(root, path))


def truncate_file(root: Path, rng: random.Random) -> Expect:
    path = rng.choice(_data_files(root) + _sidecars(root))
    data = path.read_bytes()
    path.write_bytes(data[: rng.randrange(len(data))])
    return Expect("modified", _rel(root, path))


def reorder_lines(root: Path, rng: random.Random) -> Expect:
    path = rng.choice([path for path in _data_files(root) if len(set(_lines(path))) > 1])
    lines = _lines(path)
    while True:
        shuffled = lines[:]
        rng.shuffle(shuffled)
        if shuffled != lines:
            break
    path.write_bytes(gzip.compress(b"".join(line + b"\n" for line in shuffled), mtime=0))
    return Expect("modified", _rel(root, path))


def rewrite_event(root: Path, rng: random.Random) -> Expect:
    """Change one field of one event and write a well-formed file (what a careful attacker would do)."""
    path = rng.choice(_data_files(root))
    lines = _lines(path)
    index = rng.randrange(len(lines))
    event = orjson.loads(lines[index])
    event["outcome"] = "deny" if event.get("outcome") != "deny" else "allow"
    lines[index] = orjson.dumps(event)
    path.write_bytes(gzip.compress(b"".join(line + b"\n" for line in lines), mtime=0))
    return Expect("modified", _rel(root, path))


def swap_files(root: Path, rng: random.Random) -> Expect:
    first, second = rng.sample(_data_files(root), 2)
    data = first.read_bytes()
    first.write_bytes(second.read_bytes())
    second.write_bytes(data)
    return Expect("modified", _rel(root, first))


def delete_file(root: Path, rng: random.Random) -> Expect:
    path = rng.choice(_data_files(root))
    path.unlink()
    return Expect("missing", _rel(root, path))


def delete_sidecar(root: Path, rng: random.Random) -> Expect:
    path = rng.choice(_sidecars(root))
    path.unlink()
    return Expect("missing", _rel(root, path))


def delete_day(root: Path, rng: random.Random) -> Expect:
    directory = rng.choice(layout.all_day_dirs(root))
    shutil.rmtree(directory)
    return Expect("missing", _rel(root, directory) + "/")


def forge_file(root: Path, rng: random.Random) -> Expect:
    """A new, well-named file inside the seq span the digests cover."""
    template = rng.choice(_data_files(root))
    head, low, first, last, tail = template.name.split("-", 4)
    forged = template.with_name(f"{head}-{low}-{first}-{int(last) + 1:012d}-{tail}")
    forged.write_bytes(gzip.compress(b'{"type":"cas_grant","ts":"2026-01-02T00:00:00.000000Z"}\n', mtime=0))
    return Expect("unexpected", _rel(root, forged))


def forge_sidecar(root: Path, rng: random.Random) -> Expect:
    template = rng.choice(_sidecars(root))
    forged = template.with_name(template.name.replace(".ndjson.gz.parquet", ".ndjson.parquet"))
    shutil.copyfile(template, forged)
    return Expect("unexpected", _rel(root, forged))


def resurrect_purged(root: Path, rng: random.Random) -> Expect:
    """Put a file that retention deleted back, with other content."""
    deleted = [entry["key"] for path in _digests(root) for entry in orjson.loads(path.read_bytes())["entries"]
               if entry["kind"] == d.DELETE and entry["reason"] == "retention"
               and not entry["key"].endswith(d.SIDECAR_SUFFIX)]
    name = rng.choice(deleted)
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    (root / name).write_bytes(gzip.compress(b'{"type":"cas_grant","ts":"2026-01-01T00:00:00.000000Z"}\n', mtime=0))
    return Expect("modified", name)


def foreign_file(root: Path, rng: random.Random) -> Expect:
    directory = rng.choice(layout.all_day_dirs(root))
    (directory / "notes.txt").write_text("nothing to see")
    return Expect("unexpected", _rel(root, directory / "notes.txt"))


def delete_middle_digest(root: Path, rng: random.Random) -> Expect:
    digests = _digests(root)
    index = rng.randrange(1, len(digests) - 1)
    digests[index].unlink()
    return Expect("chain_breaks", _rel(root, digests[index + 1]))


def delete_first_digest(root: Path, rng: random.Random) -> Expect:
    digests = _digests(root)
    digests[0].unlink()
    return Expect("chain_breaks", _rel(root, digests[1]))


def delete_newest_digest(root: Path, rng: random.Random) -> Expect:
    newest = _digests(root)[-1]
    newest.unlink()
    return Expect("chain_breaks", _rel(root, newest))


def delete_pointer(root: Path, rng: random.Random) -> Expect:
    (root / d.pointer_name(WRITER)).unlink()
    return Expect("chain_breaks", d.pointer_name(WRITER))


def delete_all_digests(root: Path, rng: random.Random) -> Expect:
    shutil.rmtree(root / d.DIGEST_DIR)
    return Expect("chain_breaks", d.DIGEST_DIR)


def edit_digest_byte(root: Path, rng: random.Random) -> Expect:
    path = rng.choice(_digests(root))
    _flip_byte(path, rng)
    return Expect("signature_failures", _rel(root, path))


def truncate_digest(root: Path, rng: random.Random) -> Expect:
    path = rng.choice(_digests(root))
    data = path.read_bytes()
    path.write_bytes(data[: rng.randrange(len(data))])
    return Expect("signature_failures", _rel(root, path))


def edit_digest_entry(root: Path, rng: random.Random) -> Expect:
    """Change a file, then put its new hash into the digest without re-signing."""
    path = rng.choice([path for path in _digests(root) if orjson.loads(path.read_bytes())["entries"]])
    document = orjson.loads(path.read_bytes())
    entry = rng.choice(document["entries"])
    entry["sha256"] = "0" * 64
    path.write_bytes(d.canonical(document))
    return Expect("signature_failures", _rel(root, path))


def resign_digest(root: Path, rng: random.Random) -> Expect:
    """Replace a digest with one signed by another key."""
    path = rng.choice(_digests(root))
    document = orjson.loads(path.read_bytes())
    path.write_bytes(d.sign(document, _attacker_key()))
    return Expect("signature_failures", _rel(root, path))


def claim_trusted_fingerprint(root: Path, rng: random.Random) -> Expect:
    """Sign with another key but name the trusted key's fingerprint."""
    path = rng.choice(_digests(root))
    document = orjson.loads(path.read_bytes())
    trusted = document["key_fingerprint"]
    forged = orjson.loads(d.sign(document, _attacker_key()))
    forged["key_fingerprint"] = trusted
    path.write_bytes(d.canonical(forged))
    return Expect("signature_failures", _rel(root, path))


def forge_next_digest(root: Path, rng: random.Random) -> Expect:
    newest = _digests(root)[-1]
    document = orjson.loads(newest.read_bytes())
    document["number"] += 1
    document["previous_digest"] = {"name": _rel(root, newest), "sha256": d.sha256_hex(newest.read_bytes())}
    document["entries"] = []
    name = d.digest_name(WRITER, document["number"], document["end"])
    (root / name).write_bytes(d.sign(document, _attacker_key()))
    return Expect("signature_failures", name)


def swap_digests(root: Path, rng: random.Random) -> Expect:
    """Reorder: two digests exchange their content."""
    first, second = rng.sample(_digests(root), 2)
    data = first.read_bytes()
    first.write_bytes(second.read_bytes())
    second.write_bytes(data)
    return Expect("chain_breaks", "")


def replay_old_digest(root: Path, rng: random.Random) -> Expect:
    """The newest digest's content replaced by an older, genuinely signed one."""
    digests = _digests(root)
    newest = digests[-1]
    newest.write_bytes(rng.choice(digests[:-1]).read_bytes())
    return Expect("chain_breaks", _rel(root, newest))


def edit_pointer(root: Path, rng: random.Random) -> Expect:
    _flip_byte(root / d.pointer_name(WRITER), rng)
    return Expect("signature_failures", d.pointer_name(WRITER))


def forge_pointer(root: Path, rng: random.Random) -> Expect:
    path = root / d.pointer_name(WRITER)
    document = orjson.loads(path.read_bytes())
    document["number"] -= 1
    path.write_bytes(d.sign(document, _attacker_key()))
    return Expect("signature_failures", d.pointer_name(WRITER))


def edit_public_key(root: Path, rng: random.Random) -> Expect:
    path = root / d.public_key_name(WRITER)
    path.write_bytes(d.public_pem(_attacker_key()))
    return Expect("modified", d.public_key_name(WRITER))


def delete_public_key(root: Path, rng: random.Random) -> Expect:
    (root / d.public_key_name(WRITER)).unlink()
    return Expect("missing", d.public_key_name(WRITER))


def stray_digest_file(root: Path, rng: random.Random) -> Expect:
    name = f"{d.writer_dir(WRITER)}digest-extra.json"
    (root / name).write_text("{}")
    return Expect("unexpected", name)


MUTATIONS: list[Mutation] = [
    edit_byte, edit_sidecar, truncate_file, reorder_lines, rewrite_event, swap_files, delete_file, delete_sidecar,
    delete_day, forge_file, forge_sidecar, resurrect_purged, foreign_file, delete_middle_digest, delete_first_digest,
    delete_newest_digest, delete_pointer, delete_all_digests, edit_digest_byte, truncate_digest, edit_digest_entry,
    resign_digest, claim_trusted_fingerprint, forge_next_digest, swap_digests, replay_old_digest, edit_pointer,
    forge_pointer, edit_public_key, delete_public_key, stray_digest_file,
]
