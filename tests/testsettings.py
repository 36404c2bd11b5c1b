"""Django settings for the test run: the real settings, with a throwaway data directory."""

import os
import tempfile

os.environ.setdefault("AUTOENROLL_DATA_DIR", tempfile.mkdtemp(prefix="autoenroll-test-"))
os.environ.setdefault("AUTOENROLL_SECRET_KEY", "test-secret-key-not-for-production-" + "x" * 20)
os.environ.setdefault("AUTOENROLL_CA_PASSPHRASE", "test-ca-passphrase")
os.environ.setdefault("AUTOENROLL_PUBLIC_URL", "https://ccm.test.com:8443")
os.environ.setdefault("AUTOENROLL_PUBLICATION_URL", "http://ccm.test.com:8080")
# Tests log one user on hundreds of times a minute; the rate limit has a test of its own.
os.environ.setdefault("AUTOENROLL_ENROLL_RATE_PER_MINUTE", "0")

from autoenroll.server.settings import *  # noqa: E402,F403

# Hashing user passwords at full strength would dominate the run time of the page tests.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

if DATABASES["default"]["ENGINE"].endswith(("sqlite", "sqlite3")):  # noqa: F405 - ours or Django's
    # A file, not memory: tests look into it (secrets at rest) and several processes share it.
    DATABASES["default"]["TEST"] = {"NAME": str(CONFIG.data_dir / "test.sqlite3")}  # noqa: F405
