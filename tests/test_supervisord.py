"""supervisord runs both programs from supervisord.conf; SIGTERM to it drains and exits cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.ledger import make_events
from tests.service import REPO, Service, http


def test_supervisord_starts_both_and_sigterm_drains(tmp_path: Path) -> None:
    """Both health endpoints answer under supervisord, and SIGTERM exits 0 with posted events stored."""
    service = Service(tmp_path, AUDIT_SERVICE_FLUSH_INTERVAL_SECONDS="30", AUDIT_SERVICE_FLUSH_BATCH_SIZE="100000")
    bin_dir = Path(sys.executable).parent
    env = {**service.env, "PATH": f"{bin_dir}{os.pathsep}{service.env.get('PATH', '')}"}
    log_path = tmp_path / "supervisord.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(bin_dir / "supervisord"), "-c", str(REPO / "supervisord.conf")],
                                cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        service.procs["supervisord"] = proc
        service.logs.append(log_path)
        service.wait_ready(timeout=30)
        assert http("GET", f"{service.writer_url}/healthz")[:2] == (200, {"status": "ok"})
        assert http("GET", f"{service.writer_url}/readyz")[0] == 200
        assert http("GET", f"{service.url}/healthz")[:2] == (200, {"status": "ok"})
        events = make_events(30, "supervised")
        status, body, _ = service.post({"events": events})
        assert (status, body["accepted"]) == (202, 30)
        assert service.stored_events() == [], "flush interval is long: nothing may be published yet"
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log_path.read_text()
        assert time.monotonic() - started < 30
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stored_ids = sorted(event["audit_event_id"] for event in service.stored_events())
    assert stored_ids == sorted(event["audit_event_id"] for event in events)
    output = log_path.read_text()
    assert "writer stopped" in output and "ingest stopped" in output
