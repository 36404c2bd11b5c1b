"""The sync -> enroll -> status pipeline and its audit trail."""
