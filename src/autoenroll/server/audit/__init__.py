"""The tamper-evident audit trail: enrollment events and configuration changes, chained and signed."""
