"""Stored per-user state: codec and table keys (pure)."""
