"""The writer process: owns the durable spool, flushing to storage, retention and its health port."""
