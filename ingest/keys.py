"""Typed application keys: the state an ingest app carries, set once by the app factory."""

from __future__ import annotations

from aiohttp import web

from ingest.link import WriterLink
from ingest.read_audit import AuditTrail
from ingest.stats import IngestStats
from ingest.read_process import ReadProcess
from ingest.tokens import TokenTable
from ingest.turns import ParseTurns
from ingest.verbosity import Preset
from shared.cpu_pinning import Pinning
from shared.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
LINK = web.AppKey("link", WriterLink)
STATS = web.AppKey("stats", IngestStats)
PRESET = web.AppKey("preset", Preset)
STORAGE = web.AppKey("storage", ReadProcess)
TOKENS = web.AppKey("tokens", TokenTable)
TRAIL = web.AppKey("trail", AuditTrail)
TURNS = web.AppKey("turns", ParseTurns)
PINNING = web.AppKey("pinning", Pinning)
