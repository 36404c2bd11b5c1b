"""Helpers shared by the server's apps."""
