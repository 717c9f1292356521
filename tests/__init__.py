"""Test suite of auditlake."""
