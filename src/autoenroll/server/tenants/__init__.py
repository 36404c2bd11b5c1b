"""Customers, their organizations and email domains (guide sections 2.3 and 6)."""
