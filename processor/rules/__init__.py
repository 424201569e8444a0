"""Rule language: field types, operator registry, compiler and evaluation (pure)."""
