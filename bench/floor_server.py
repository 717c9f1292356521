"""The throughput floor: an aiohttp server (uvloop) that only reads the body and answers 202.

Usage: .venv/bin/python bench/floor_server.py PORT
"""

from __future__ import annotations

import sys

import uvloop
from aiohttp import web


async def accept(request: web.Request) -> web.Response:
    """Read the whole body, answer 202 with a small JSON body like the service's."""
    await request.read()
    return web.Response(status=202, body=b'{"accepted":0,"queued":0}', content_type="application/json")


def main() -> None:
    """Serve on 127.0.0.1:PORT until killed."""
    app = web.Application(client_max_size=8 * 1024 * 1024)
    app.router.add_post("/v1/audit/events", accept)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)


if __name__ == "__main__":
    main()
