"""A moto S3 server in its own process for the benchmarks, so it does not share a GIL with the load generator."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

from botocore.exceptions import EndpointConnectionError

from tests.s3.conftest import s3_client
from tests.service import free_port


def start_moto(bucket: str) -> tuple[subprocess.Popen[bytes], str, Any]:
    """Start ``python -m moto.server`` on a free loopback port, create ``bucket``; (process, endpoint, client)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    client = s3_client(endpoint)
    deadline = time.monotonic() + 30
    while True:
        try:
            client.create_bucket(Bucket=bucket)
            return proc, endpoint, client
        except EndpointConnectionError:  # not listening yet
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise
            time.sleep(0.1)


def stop_moto(proc: subprocess.Popen[bytes] | None) -> None:
    """Terminate the server and wait for it (nothing for None: a run on the local backend started none)."""
    if proc is None:
        return
    proc.terminate()
    proc.wait(timeout=10)
