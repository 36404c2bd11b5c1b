"""Certificate authorities and the certificates they issued, with their revocation state."""
