"""Data-subject requests: right-of-access exports and erasure."""
