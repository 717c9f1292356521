"""S3 backend tests against moto in server mode on loopback."""
