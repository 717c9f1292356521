"""Contracts shared by the ingest and writer processes: event model, settings, wire protocol, errors."""
