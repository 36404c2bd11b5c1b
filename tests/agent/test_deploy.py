"""`autoenroll install-logon`: a systemd user unit or an XDG autostart entry (Linux), a LaunchAgent (macOS)."""

from __future__ import annotations

import configparser
import plistlib
import shutil
import subprocess
import sys

import pytest

from autoenroll.agent import deploy


def install_logon(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    return subprocess.run(
        [sys.executable, "-m", "autoenroll.agent", "--config", str(tmp_path / "autoenroll.conf"), "install-logon",
         *args],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux logon entries")
def test_systemd_user_unit_is_written_and_enabled(tmp_path):
    proc = install_logon(tmp_path, "--method", "systemd")
    assert proc.returncode == 0, proc.stderr
    unit = tmp_path / "cfg" / "systemd" / "user" / "autoenroll.service"
    parsed = configparser.ConfigParser(interpolation=None)
    parsed.read(unit)
    assert parsed["Service"]["Type"] == "oneshot"
    exec_start = parsed["Service"]["ExecStart"]
    assert exec_start.endswith(f"--config {tmp_path / 'autoenroll.conf'} run")
    assert parsed["Install"]["WantedBy"] == "default.target"
    link = unit.parent / "default.target.wants" / "autoenroll.service"
    assert link.is_symlink() and link.resolve() == unit
    if shutil.which("systemd-analyze"):
        check = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
        assert "autoenroll.service" not in check.stderr or "Failed" not in check.stderr, check.stderr
    assert install_logon(tmp_path, "--method", "systemd", "--uninstall").returncode == 0
    assert not unit.exists() and not link.is_symlink()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux logon entries")
def test_xdg_autostart_entry(tmp_path):
    proc = install_logon(tmp_path, "--method", "autostart")
    assert proc.returncode == 0, proc.stderr
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str
    entry.read(tmp_path / "cfg" / "autostart" / "autoenroll.desktop")
    section = entry["Desktop Entry"]
    assert section["Type"] == "Application" and section["NoDisplay"] == "true"
    assert section["Exec"].endswith(" run") and "--config" in section["Exec"]


def test_launch_agent_runs_at_load():
    plist = plistlib.loads(deploy.launch_agent(["/usr/local/bin/autoenroll", "run"]))
    assert plist["RunAtLoad"] is True
    assert plist["ProgramArguments"] == ["/usr/local/bin/autoenroll", "run"]
    assert plist["Label"] == "com.autoenroll.agent"


def test_the_command_started_is_the_agent(tmp_path):
    cmd = deploy.command(str(tmp_path / "a.conf"))
    assert cmd[-1] == "run" and cmd[-3:-1] == ["--config", str(tmp_path / "a.conf")]
    proc = subprocess.run([*cmd[:-3], "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "install-logon" in proc.stdout
