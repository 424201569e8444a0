"""Profile merge, membership decision, diff and change ids (pure)."""
