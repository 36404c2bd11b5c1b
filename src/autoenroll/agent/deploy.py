"""``autoenroll install-logon``: run ``autoenroll run`` at every logon, the way each platform does it.

Linux: a systemd user unit (enabled for default.target, i.e. at the start of the user's session) or an
XDG autostart entry (desktop sessions without systemd). macOS: a LaunchAgent with RunAtLoad. Windows is
deployed by Group Policy (a logon script, guide 3.2-3.3), see docs/agent.md.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

UNIT = "autoenroll.service"
DESKTOP = "autoenroll.desktop"
LAUNCH_AGENT = "com.autoenroll.agent.plist"


def command(config: str | None = None) -> list[str]:
    """How to start the agent: the installed ``autoenroll`` script, else this interpreter with -m."""
    exe = shutil.which("autoenroll")
    args = [exe] if exe else [sys.executable, "-m", "autoenroll.agent"]
    if config:
        args += ["--config", str(Path(config).resolve())]
    return [*args, "run"]


def config_home() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")


def systemd_unit(cmd: list[str]) -> str:
    return (
        "[Unit]\n"
        "Description=S/MIME certificate auto enrollment (autoenroll run)\n"
        "Documentation=https://github.com/autoenroll/autoenroll/blob/main/docs/agent.md\n"
        "After=network-online.target\n\n"
        "[Service]\n"
        "Type=oneshot\n"
        f"ExecStart={' '.join(shlex.quote(a) for a in cmd)}\n"
        "TimeoutStartSec=300\n\n"
        "[Install]\n"
        "WantedBy=default.target\n"
    )


def autostart_entry(cmd: list[str]) -> str:
    return (
        "[Desktop Entry]\n"
        "Type=Application\n"
        "Name=autoenroll\n"
        "Comment=S/MIME certificate auto enrollment\n"
        f"Exec={' '.join(shlex.quote(a) for a in cmd)}\n"
        "NoDisplay=true\n"
        "Terminal=false\n"
        "X-GNOME-Autostart-enabled=true\n"
    )


def launch_agent(cmd: list[str]) -> bytes:
    import plistlib

    return plistlib.dumps(
        {
            "Label": LAUNCH_AGENT.removesuffix(".plist"),
            "ProgramArguments": cmd,
            "RunAtLoad": True,
            "ProcessType": "Background",
            "StandardErrorPath": "/dev/null",
        }
    )


def _write(path: Path, data: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)


def install(method: str = "auto", config: str | None = None, *, uninstall: bool = False) -> list[str]:
    """Create (or remove) the logon entry; returns what was done, one line each."""
    cmd = command(config)
    if sys.platform == "win32":
        raise ValueError("on Windows deploy `autoenroll run` as a Group Policy logon script: see docs/agent.md")
    if sys.platform == "darwin" and method in ("auto", "launchagent"):
        path = Path.home() / "Library" / "LaunchAgents" / LAUNCH_AGENT
        if uninstall:
            path.unlink(missing_ok=True)
            return [f"removed {path}"]
        _write(path, launch_agent(cmd))
        return [f"wrote {path}", f"active at next logon (now: launchctl bootstrap gui/{os.getuid()} {path})"]
    if method == "auto":
        method = "systemd" if shutil.which("systemctl") else "autostart"
    if method == "systemd":
        unit = config_home() / "systemd" / "user" / UNIT
        link = unit.parent / "default.target.wants" / UNIT
        if uninstall:
            link.unlink(missing_ok=True)
            unit.unlink(missing_ok=True)
            return [f"removed {unit}"]
        _write(unit, systemd_unit(cmd))
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(unit)  # what `systemctl --user enable` does, without needing a running user manager
        return [f"wrote {unit}", f"enabled: {link} -> {unit}"]
    if method == "autostart":
        path = config_home() / "autostart" / DESKTOP
        if uninstall:
            path.unlink(missing_ok=True)
            return [f"removed {path}"]
        _write(path, autostart_entry(cmd))
        return [f"wrote {path}"]
    raise ValueError(f"unknown method {method!r} (systemd, autostart, launchagent)")
