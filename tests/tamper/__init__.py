"""Tamper evidence: manifest journal, signed digest chains, verification (HTTP, CLI, offline)."""
