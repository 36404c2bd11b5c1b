"""The PKI layer stays pure Python: the agent and the server both import it."""

from __future__ import annotations

import subprocess
import sys


def test_importing_pki_pulls_in_neither_django_nor_the_server():
    code = (
        "import sys, autoenroll.pki as pki; [getattr(pki, name) for name in pki.__all__];"
        "bad = sorted(m for m in sys.modules if m == 'django' or m.startswith(('django.', 'autoenroll.server')));"
        "print(','.join(bad))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_a_key_type_name_costs_the_agent_no_cryptography():
    """The agent checks its keytype on every logon against pki's list: that must not load the PKI itself."""
    code = (
        "import sys, autoenroll.agent.config;"
        "print(','.join(sorted(m for m in sys.modules if m.startswith(('cryptography', 'pyasn1', 'autoenroll.pki.')))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "autoenroll.pki.keytypes"
