"""Masking of PII in log records (stdlib logging filter and structlog processor)."""
