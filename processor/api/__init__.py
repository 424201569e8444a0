"""Admin/query API: authentication, authorization and request validation (pure)."""
