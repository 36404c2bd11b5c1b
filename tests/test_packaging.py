"""`pip install autoenroll` is the agent alone: `autoenroll.pki` imports with the agent's dependencies, the
server's command says how to install the server instead of crashing, and both commands tell their version."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from autoenroll import version

ROOT = Path(__file__).resolve().parents[1]
SERVER_EXTRA = "pip install 'autoenroll[server]'"


def run(*argv: str, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)


def test_both_commands_tell_the_installed_version():
    agent = run(sys.executable, "-m", "autoenroll.agent", "--version")
    server = run(sys.executable, "-m", "autoenroll.server.cli", "--version")
    assert (agent.returncode, agent.stdout) == (0, f"autoenroll {version()}\n")
    assert (server.returncode, server.stdout) == (0, f"autoenroll-server {version()}\n")


def test_the_server_command_without_django_names_the_server_extra_instead_of_crashing():
    code = "import sys; sys.modules['django'] = None; from autoenroll.server.cli import main; main(['x', 'init'])"
    result = run(sys.executable, "-c", code)
    assert result.returncode == 2
    assert SERVER_EXTRA in result.stderr and "Traceback" not in result.stderr


def test_importing_the_settings_changes_neither_the_environment_nor_the_data_directory(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOENROLL_", "DJANGO_", "KRB5"))}
    env.update(AUTOENROLL_DATA_DIR=str(tmp_path / "data"), AUTOENROLL_SECRET_KEY="s" * 50)
    code = (
        "import os, sys; before = dict(os.environ); import autoenroll.server.settings;"
        "changed = sorted(k for k in {*before, *os.environ} if before.get(k) != os.environ.get(k)); print(changed)"
    )
    result = run(sys.executable, "-c", code, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    assert not (tmp_path / "data").exists()


def test_the_server_prepares_kerberos_once_at_start_up(tmp_path):
    """What `serve` and `init` call (and wsgi.py for a WSGI server started by hand)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOENROLL_", "DJANGO_", "KRB5"))}
    env.update(
        AUTOENROLL_DATA_DIR=str(tmp_path),
        AUTOENROLL_SECRET_KEY="s" * 50,
        AUTOENROLL_KERBEROS_CLOCKSKEW="120",
        DJANGO_SETTINGS_MODULE="autoenroll.server.settings",
        KRB5_CONFIG="/etc/krb5.conf",
    )
    code = (
        "import os, autoenroll.server.wsgi as wsgi; wsgi.application;"
        "from autoenroll.server.startup import prepare_kerberos;"
        "assert prepare_kerberos() == prepare_kerberos();"
        "print(os.environ['KRB5RCACHEDIR']); print(os.environ['KRB5_CONFIG'])"
    )
    result = run(sys.executable, "-c", code, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [str(tmp_path / "rcache"), f"{tmp_path / 'krb5-acceptor.conf'}:/etc/krb5.conf"]
    assert "clockskew = 120" in (tmp_path / "krb5-acceptor.conf").read_text()


def test_the_agent_only_wheel_installs_and_runs_in_a_clean_venv(tmp_path):
    """Builds the wheel from a copy of the tree, installs it without extras from PyPI (skips offline)."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "wheels"), str(source))
    if built.returncode != 0:
        pytest.skip(f"cannot build the wheel (offline?): {built.stderr.strip()[-300:]}")
    (wheel,) = (tmp_path / "wheels").glob("autoenroll-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert not [n for n in archive.namelist() if n.startswith("autoenroll/testbed/")]  # no test bed installed
    venv.create(tmp_path / "venv", with_pip=True)
    bin_dir = tmp_path / "venv" / ("Scripts" if sys.platform == "win32" else "bin")
    installed = run(str(bin_dir / "python"), "-m", "pip", "install", "-q", str(wheel), timeout=300)
    if installed.returncode != 0:
        pytest.skip(f"cannot install the agent's dependencies (offline?): {installed.stderr.strip()[-300:]}")

    agent = run(str(bin_dir / "autoenroll"), "--version")
    assert (agent.returncode, agent.stdout) == (0, f"autoenroll {version()}\n"), agent.stderr
    pki = run(str(bin_dir / "python"), "-c", "import autoenroll.pki as p; [getattr(p, n) for n in p.__all__]")
    assert pki.returncode == 0, pki.stderr
    request = run(
        str(bin_dir / "python"),
        "-c",
        "from autoenroll.agent.stores.base import python_request as r; print(r('A', 'a@b.c', 'ec-p256').csr_pem)",
    )
    assert "BEGIN CERTIFICATE REQUEST" in request.stdout, request.stderr
    server = run(str(bin_dir / "autoenroll-server"), "init")
    assert server.returncode == 2 and SERVER_EXTRA in server.stderr and "Traceback" not in server.stderr
    django = run(str(bin_dir / "python"), "-c", "import django")
    assert django.returncode != 0  # the agent-only install really has no Django
