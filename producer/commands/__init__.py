"""Subcommands of the ``auditlake`` command; each module exposes ``register(subparsers)``."""
