"""Expiry notices: the holder of a certificate not yet renewed is mailed before it lapses, the admins daily."""
