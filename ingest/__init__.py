"""The ingest process: HTTP API, validation, backpressure, forwarding to the writer, and reads."""
