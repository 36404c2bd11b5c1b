"""The key types we issue for and accept, by name: the one list the PKI layer, the server's and the agent's
settings check against.

Plain strings with no imports at all: the agent checks its ``keytype`` on every logon, and importing
``cryptography`` for that would cost the quick logon more than the rest of its work.
"""

__all__ = ["CA_KEY_TYPES", "END_ENTITY_KEY_TYPES", "KEY_TYPES"]

KEY_TYPES = ("ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096")
END_ENTITY_KEY_TYPES = KEY_TYPES
# RSA-2048 is still fine for a 1-2 year user certificate, not for a 10-20 year CA.
CA_KEY_TYPES = ("ec-p256", "ec-p384", "rsa-3072", "rsa-4096")
