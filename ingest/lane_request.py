"""A post received by the fast lane, with the parts of aiohttp's request that answering it reads."""

from __future__ import annotations

from aiohttp import web
from aiohttp.http import HttpVersion11
from multidict import CIMultiDict, CIMultiDictProxy, MultiDict, MultiDictProxy

from ingest.front_door import EVENTS_PATH

NO_QUERY: MultiDictProxy[str] = MultiDictProxy(MultiDict())


class WholeBody:
    """The body of a post, all of it received before the post is answered (``request.content``)."""

    __slots__ = ("body",)

    def __init__(self, body: bytes) -> None:
        self.body = body

    def is_eof(self) -> bool:
        """Nothing more will arrive."""
        return True

    def read_nowait(self) -> bytes:
        """The whole body, once; then nothing."""
        body, self.body = self.body, b""
        return body

    async def readany(self) -> bytes:
        """``read_nowait``, for a body read chunk by chunk (a compressed one)."""
        return self.read_nowait()


class StalledBody:
    """The body of a post the lane's sweep found past its read deadline: ``read_body`` waits for it and is
    told the deadline passed (its ``TimeoutError``), so it refuses the post with its own 408."""

    __slots__ = ()

    def is_eof(self) -> bool:
        """More was announced than arrived."""
        return False

    async def readany(self) -> bytes:
        """The deadline ``read_body`` waits within has passed already."""
        raise TimeoutError


class LaneRequest(dict):
    """What ``FrontDoor.respond`` and the code it calls read of a request: the app, method, path, headers,
    body (as ``content``), its length, an empty query, and a dict for per-request values (the principal).

    ``ingest.fast_lane`` builds one only for ``POST /v1/audit/events HTTP/1.1`` with a ``Content-Length``,
    no ``Transfer-Encoding`` or ``Expect``, a usual JSON ``Content-Type`` or none, and the whole body
    received (or, past the body's deadline, a ``StalledBody``), so ``content_type`` and ``charset`` are
    never asked for and a compressed body is read in one ``readany``.
    """

    __slots__ = ("app", "headers", "content", "content_length")
    method = "POST"
    version = HttpVersion11
    keep_alive = True
    query = NO_QUERY
    path = raw_path = EVENTS_PATH

    def __init__(self, app: web.Application, headers: list[tuple[str, str]], body: bytes) -> None:
        super().__init__()
        self.app = app
        self.headers = CIMultiDictProxy(CIMultiDict(headers))
        self.content = WholeBody(body)
        self.content_length = len(body)
