"""The PKI layer stays pure Python: the agent and the server both import it."""

from __future__ import annotations

import subprocess
import sys


def test_importing_pki_pulls_in_neither_django_nor_the_server():
    code = (
        "import sys, autoenroll.pki, autoenroll.pki.csr;"
        "bad = sorted(m for m in sys.modules if m == 'django' or m.startswith(('django.', 'autoenroll.server')));"
        "print(','.join(bad))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
