"""The REST API (django-ninja, OpenAPI at /api/docs) and its per-user tokens."""
