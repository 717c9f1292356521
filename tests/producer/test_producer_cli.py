"""``auditlake send``: files, stdin and .gz, bad line reporting, and a non-zero exit on any loss."""

from __future__ import annotations

import gzip
import subprocess
import sys

import pytest

from producer.cli import build_parser, main


def events(count: int, start: int = 0) -> list[dict]:
    return [{"type": "cli.test", "n": n, "audit_event_id": f"id-{n}"} for n in range(start, start + count)]


def received_ns(server) -> list[int]:
    return sorted(event["n"] for event in server.accepted())


def test_send_a_file_in_batches_with_the_token(audit_server, tmp_path, ndjson, capsys):
    path = tmp_path / "events.ndjson"
    path.write_bytes(ndjson(events(25)))
    code = main(["send", str(path), "--url", audit_server.url, "--token", "tok", "--batch-size", "7"])
    assert code == 0, capsys.readouterr().err
    assert received_ns(audit_server) == list(range(25))
    assert [len(request.events) for request in audit_server.requests] == [7, 7, 7, 4]
    assert all(request.headers["Authorization"] == "Bearer tok" for request in audit_server.requests)
    assert "25 sent" in capsys.readouterr().err


def test_send_a_gzipped_file_of_the_services_local_storage(audit_server, tmp_path, ndjson):
    path = tmp_path / "2024-01-01.ndjson.gz"
    stored = [dict(event, received_at="2024-01-01T00:00:00.000000Z") for event in events(30)]
    path.write_bytes(gzip.compress(ndjson(stored)))
    assert main(["send", str(path), "--url", audit_server.url]) == 0
    assert received_ns(audit_server) == list(range(30))
    assert {event["audit_event_id"] for event in audit_server.accepted()} == {f"id-{n}" for n in range(30)}


@pytest.mark.parametrize("compressed", [False, True])
def test_send_from_stdin_with_url_and_token_from_the_environment(compressed, audit_server, ndjson, child_env):
    data = ndjson(events(12))
    env = dict(child_env, AUDITLAKE_URL=audit_server.url, AUDITLAKE_TOKEN="from-env")
    child = subprocess.run(
        [sys.executable, "-m", "producer.cli", "send"],
        input=gzip.compress(data) if compressed else data,
        env=env,
        capture_output=True,
        timeout=30,
    )
    assert child.returncode == 0, child.stderr.decode()
    assert received_ns(audit_server) == list(range(12))
    assert audit_server.requests[0].headers["Authorization"] == "Bearer from-env"


def test_bad_lines_are_reported_by_number_and_make_the_exit_non_zero(audit_server, tmp_path, ndjson, capsys):
    good = ndjson(events(2)).splitlines()
    lines = [
        good[0],
        b"",
        b"{not json",
        b'["an", "array"]',
        b'{"type": 42}',
        b'{"ts": "last tuesday"}',
        b"\xff\xfe",
        good[1],
    ]
    path = tmp_path / "mixed.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    code = main(["send", str(path), "--url", audit_server.url])
    err = capsys.readouterr().err
    assert code == 1
    for lineno in (3, 4, 5, 6, 7):
        assert f"mixed.ndjson:{lineno}: bad line" in err, err
    assert ":1: bad" not in err and ":8: bad" not in err and ":2: bad" not in err
    assert received_ns(audit_server) == [0, 1]
    assert "7 events read: 2 sent, 0 rejected by the service, 0 not sent, 5 bad lines" in err


def test_service_down_exits_non_zero_and_counts_what_was_not_sent(down_url, tmp_path, ndjson, capsys):
    path = tmp_path / "events.ndjson"
    path.write_bytes(ndjson(events(25)))
    code = main(["send", str(path), "--url", down_url, "--max-attempts", "2", "--batch-size", "10"])
    err = capsys.readouterr().err
    assert code == 1
    assert "1-10: not sent: connection error" in err, err
    assert "25 events read: 0 sent, 0 rejected by the service, 25 not sent" in err


def test_a_batch_rejected_by_the_service_is_reported_with_the_line_it_names(audit_server, tmp_path, ndjson, capsys):
    audit_server.mode = "reject"
    audit_server.detail = "event 1: field 'type' must be a string"
    path = tmp_path / "events.ndjson"
    path.write_bytes(b"\n" + ndjson(events(3)))
    code = main(["send", str(path), "--url", audit_server.url])
    err = capsys.readouterr().err
    assert code == 1
    assert "events.ndjson:3: rejected (HTTP 400): event 1: field 'type' must be a string" in err, err
    assert "3 events read: 0 sent, 3 rejected by the service, 0 not sent" in err
    assert audit_server.count(400) == 1


def test_retries_resend_the_same_ids(audit_server, tmp_path, ndjson):
    audit_server.fail_first = 1
    audit_server.retry_after = "0"
    path = tmp_path / "events.ndjson"
    path.write_bytes(ndjson([{"type": "no id yet", "n": n} for n in range(3)]))
    assert main(["send", str(path), "--url", audit_server.url]) == 0
    refused, accepted = audit_server.requests
    assert [event["audit_event_id"] for event in refused.posted] == [e["audit_event_id"] for e in accepted.events]


def test_a_missing_file_is_a_usage_error(tmp_path, capsys):
    assert main(["send", str(tmp_path / "absent.ndjson"), "--url", "http://127.0.0.1:9"]) == 2
    assert "cannot open" in capsys.readouterr().err


def test_subcommands_are_registered_by_their_own_modules():
    parser = build_parser(())
    with pytest.raises(SystemExit):
        parser.parse_args(["send"])
    args = build_parser().parse_args(["send", "--batch-size", "5"])
    assert (args.file, args.batch_size, args.command) == ("-", 5, "send")
