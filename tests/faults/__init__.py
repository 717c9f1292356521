"""Fault-injection suite: crashes, storage faults and corrupt data, checked against a producer ledger."""
