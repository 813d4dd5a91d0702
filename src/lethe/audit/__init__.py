"""The tamper-evident audit log: chain (pure), events, storage, checkpoints, verification."""
