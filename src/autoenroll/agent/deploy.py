"""``autoenroll install-logon``: run ``autoenroll run`` at every logon and once a day, the way each
platform does it (a user who stays logged on for weeks must still renew).

Linux: a systemd user unit (enabled for default.target, i.e. at the start of the user's session) and a
daily timer, or an XDG autostart entry (desktop sessions without systemd: logon only). macOS: a
LaunchAgent with RunAtLoad and a daily StartInterval. Windows is deployed by Group Policy (a logon
script, guide 3.2-3.3), see docs/agent.md. The ticket cache of the installing session (KRB5CCNAME) is
passed on when set: a service started by systemd or launchd does not inherit the session's environment.
``--uninstall`` removes every entry any method wrote.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

UNIT = "autoenroll.service"
TIMER = "autoenroll.timer"
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


def _ticket_cache() -> str | None:
    return os.environ.get("KRB5CCNAME") or None


def systemd_unit(cmd: list[str], ccache: str | None = None) -> str:
    environment = f"Environment={shlex.quote(f'KRB5CCNAME={ccache}')}\n" if ccache else ""
    return (
        "[Unit]\n"
        "Description=S/MIME certificate auto enrollment (autoenroll run)\n"
        "Documentation=https://github.com/autoenroll/autoenroll/blob/main/docs/agent.md\n"
        "After=network-online.target\n\n"
        "[Service]\n"
        "Type=oneshot\n"
        f"{environment}"
        f"ExecStart={' '.join(shlex.quote(a) for a in cmd)}\n"
        "TimeoutStartSec=300\n\n"
        "[Install]\n"
        "WantedBy=default.target\n"
    )


def systemd_timer() -> str:
    """Daily, spread over an hour so that a company's machines do not all ask at midnight."""
    return (
        "[Unit]\n"
        "Description=S/MIME certificate auto enrollment, daily\n\n"
        "[Timer]\n"
        "OnCalendar=daily\n"
        "RandomizedDelaySec=1h\n"
        "Persistent=true\n\n"
        "[Install]\n"
        "WantedBy=timers.target\n"
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


def launch_agent(cmd: list[str], ccache: str | None = None) -> bytes:
    import plistlib

    agent = {
        "Label": LAUNCH_AGENT.removesuffix(".plist"),
        "ProgramArguments": cmd,
        "RunAtLoad": True,
        "StartInterval": 86400,
        "ProcessType": "Background",
        "StandardErrorPath": "/dev/null",
    }
    if ccache:
        agent["EnvironmentVariables"] = {"KRB5CCNAME": ccache}
    return plistlib.dumps(agent)


def _entries() -> list[Path]:
    """Every file any method writes (what --uninstall removes)."""
    user_units = config_home() / "systemd" / "user"
    return [
        user_units / "default.target.wants" / UNIT,
        user_units / "timers.target.wants" / TIMER,
        user_units / UNIT,
        user_units / TIMER,
        config_home() / "autostart" / DESKTOP,
        Path.home() / "Library" / "LaunchAgents" / LAUNCH_AGENT,
    ]


def _enable(unit: Path, target: str) -> Path:
    """What `systemctl --user enable` does, without needing a running user manager."""
    link = unit.parent / f"{target}.wants" / unit.name
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(unit)
    return link


def _write(path: Path, data: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)


def install(method: str = "auto", config: str | None = None, *, uninstall: bool = False) -> list[str]:
    """Create (or remove) the logon entry; returns what was done, one line each."""
    if uninstall:
        removed = []
        for path in _entries():
            if path.is_symlink() or path.exists():
                path.unlink()
                removed.append(f"removed {path}")
        return removed or ["nothing to remove"]
    cmd, ccache = command(config), _ticket_cache()
    if sys.platform == "win32":
        raise ValueError("on Windows deploy `autoenroll run` as a Group Policy logon script: see docs/agent.md")
    if sys.platform == "darwin" and method in ("auto", "launchagent"):
        path = Path.home() / "Library" / "LaunchAgents" / LAUNCH_AGENT
        _write(path, launch_agent(cmd, ccache))
        now = f"launchctl bootstrap gui/{os.getuid()} {path}"
        return [f"wrote {path} (at logon and daily)", f"active at next logon (now: {now})"]
    if method == "auto":
        method = "systemd" if shutil.which("systemctl") else "autostart"
    if method == "systemd":
        unit, timer = config_home() / "systemd" / "user" / UNIT, config_home() / "systemd" / "user" / TIMER
        _write(unit, systemd_unit(cmd, ccache))
        _write(timer, systemd_timer())
        links = [_enable(unit, "default.target"), _enable(timer, "timers.target")]
        return [f"wrote {unit} and {timer}", *(f"enabled: {link} -> {link.resolve()}" for link in links)]
    if method == "autostart":
        path = config_home() / "autostart" / DESKTOP
        _write(path, autostart_entry(cmd))
        return [f"wrote {path}", "at logon only: for a daily run use --method systemd, or cron"]
    raise ValueError(f"unknown method {method!r} (systemd, autostart, launchagent)")
