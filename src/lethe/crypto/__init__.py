"""Cryptographic primitives, quarantined: callers use the recipes, not the algorithms."""
