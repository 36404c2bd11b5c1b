"""`autoenroll install-logon`: a systemd user unit or an XDG autostart entry (Linux), a LaunchAgent (macOS)."""

from __future__ import annotations

import configparser
import plistlib
import shutil
import subprocess
import sys

import pytest

from autoenroll.agent import deploy


def install_logon(tmp_path, *args: str, **extra_env: str) -> subprocess.CompletedProcess:
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "XDG_CONFIG_HOME": str(tmp_path / "cfg"), **extra_env}
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
    timer = unit.parent / "autoenroll.timer"
    parsed_timer = configparser.ConfigParser(interpolation=None)
    parsed_timer.read(timer)
    assert parsed_timer["Timer"]["OnCalendar"] == "daily" and parsed_timer["Install"]["WantedBy"] == "timers.target"
    assert (unit.parent / "timers.target.wants" / "autoenroll.timer").resolve() == timer
    assert install_logon(tmp_path, "--method", "systemd", "--uninstall").returncode == 0
    assert not unit.exists() and not link.is_symlink() and not timer.exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux logon entries")
def test_the_ticket_cache_of_the_installing_session_is_passed_on(tmp_path):
    """A user service does not inherit the session's KRB5CCNAME: without it, every run is error 37."""
    assert install_logon(tmp_path, "--method", "systemd", KRB5CCNAME="FILE:/tmp/krb5cc_1000").returncode == 0
    parsed = configparser.ConfigParser(interpolation=None)
    parsed.read(tmp_path / "cfg" / "systemd" / "user" / "autoenroll.service")
    assert parsed["Service"]["Environment"] == "KRB5CCNAME=FILE:/tmp/krb5cc_1000"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux logon entries")
def test_uninstall_removes_what_every_method_wrote(tmp_path):
    """An autostart entry from an earlier install stayed behind when --uninstall named another method."""
    assert install_logon(tmp_path, "--method", "autostart").returncode == 0
    assert install_logon(tmp_path, "--method", "systemd").returncode == 0
    removed = install_logon(tmp_path, "--uninstall").stdout
    assert "autoenroll.desktop" in removed and "autoenroll.service" in removed and "autoenroll.timer" in removed
    assert not any(p.is_file() or p.is_symlink() for p in (tmp_path / "cfg").rglob("autoenroll*"))


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
    plist = plistlib.loads(deploy.launch_agent(["/usr/local/bin/autoenroll", "run"], "API:1234"))
    assert plist["RunAtLoad"] is True and plist["StartInterval"] == 86400
    assert plist["EnvironmentVariables"] == {"KRB5CCNAME": "API:1234"}
    assert plist["ProgramArguments"] == ["/usr/local/bin/autoenroll", "run"]
    assert plist["Label"] == "com.autoenroll.agent"


def test_the_command_started_is_the_agent(tmp_path):
    cmd = deploy.command(str(tmp_path / "a.conf"))
    assert cmd[-1] == "run" and cmd[-3:-1] == ["--config", str(tmp_path / "a.conf")]
    proc = subprocess.run([*cmd[:-3], "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "install-logon" in proc.stdout
