"""Active Directory servers and the people synced from them (guide section 2.3)."""
