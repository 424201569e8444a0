"""Site catalog (profile fields, segments, rules) and command handling (pure)."""
