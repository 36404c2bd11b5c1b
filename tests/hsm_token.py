"""A throwaway SoftHSM2 token for tests of the PKCS#11 CA backend (pki and server tests share it).

Skipped when SoftHSM2 is not installed, unless AUTOENROLL_REQUIRE_SAMBA=1 (CI), where a missing HSM
is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from autoenroll.pki import clear_token_cache
from autoenroll.pki.hsm import pkcs11_module_path

MODULE = pkcs11_module_path()
TOKEN = "autoenroll-test"
PIN = "246813"
SO_PIN = "97531086"


def missing_hsm() -> str | None:
    if not Path(MODULE).is_file():
        return f"the PKCS#11 module {MODULE} is missing (apt-get install softhsm2)"
    if shutil.which("softhsm2-util") is None:
        return "softhsm2-util is missing (apt-get install softhsm2)"
    try:
        import pkcs11  # noqa: F401
    except ImportError:
        return "python-pkcs11 is not installed (pip install 'autoenroll[hsm]')"
    return None


def require_hsm() -> None:
    reason = missing_hsm()
    if reason is None:
        return
    if os.environ.get("AUTOENROLL_REQUIRE_SAMBA") == "1":
        pytest.fail(f"AUTOENROLL_REQUIRE_SAMBA=1 but SoftHSM2 cannot be used: {reason}")
    pytest.skip(reason)


def uri(label: str) -> str:
    return f"pkcs11:token={TOKEN};object={label}"


@contextmanager
def softhsm_token(directory: Path) -> Iterator[Path]:
    """A fresh SoftHSM2 token in `directory`, selected through SOFTHSM2_CONF while the block runs."""
    require_hsm()
    import pkcs11

    (directory / "tokens").mkdir(parents=True)
    conf = directory / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {directory / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    previous = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    # SoftHSM reads its configuration in C_Initialize: start from an unloaded module.
    clear_token_cache()
    pkcs11.unload(MODULE)
    try:
        init = subprocess.run(
            ["softhsm2-util", "--init-token", "--free", "--label", TOKEN, "--pin", PIN, "--so-pin", SO_PIN],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert init.returncode == 0, init.stdout + init.stderr
        yield directory
    finally:
        clear_token_cache()
        pkcs11.unload(MODULE)
        if previous is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = previous
