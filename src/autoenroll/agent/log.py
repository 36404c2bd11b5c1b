"""``autoenroll.log``, where the guide's section 8 says admins look: one line per step, errors numbered.

Windows: %TEMP%\\autoenroll.log (guide 8.1.1). Linux: $XDG_STATE_HOME/autoenroll/log/autoenroll.log
(~/.local/state/...); macOS: ~/Library/Logs/autoenroll/autoenroll.log. A failure reads
``Error 35: Connect to certificate manager error. (detail)`` so that the guide's text can be searched.
Plain appends, no logging framework: the quick no-op logon pays for nothing it does not use.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

LOG_NAME = "autoenroll.log"
MAX_BYTES = 1024 * 1024  # then the file is moved to autoenroll.log.1


def default_path() -> Path:
    """The log file of guide section 8 for this platform (``AUTOENROLL_LOG`` overrides it)."""
    override = os.environ.get("AUTOENROLL_LOG")
    if override:
        return Path(override)
    if sys.platform == "win32":
        import tempfile

        return Path(tempfile.gettempdir(), LOG_NAME)
    import platformdirs

    return Path(platformdirs.user_log_dir("autoenroll", appauthor=False), LOG_NAME)


class RunLog:
    """Appends timestamped lines; never raises (a log that cannot be written must not stop a logon)."""

    def __init__(self, path: Path | None = None, *, echo: bool = False) -> None:
        self.path = path or default_path()
        self.echo = echo
        self.lines: list[str] = []
        self._rotated = False

    def _write(self, level: str, text: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S%z")
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")  # a lone surrogate from a server
        text = " | ".join(part.strip() for part in text.replace("\x00", "").splitlines() if part.strip())
        line = f"{stamp} autoenroll[{os.getpid()}] {level} {text}"
        self.lines.append(line)
        if self.echo or level == "ERROR":
            print(line, file=sys.stderr)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self._rotated:
                self._rotated = True
                if self.path.exists() and self.path.stat().st_size > MAX_BYTES:
                    os.replace(self.path, self.path.with_name(self.path.name + ".1"))
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line + "\n")
        except OSError as exc:
            print(f"autoenroll: cannot write {self.path}: {exc}", file=sys.stderr)

    def step(self, text: str) -> None:
        self._write("INFO", text)

    def warning(self, text: str) -> None:
        self._write("WARNING", text)

    def error(self, code: int, message: str, detail: str = "") -> None:
        """A numbered error (client 31-41, or a server's 1-30 exactly as received)."""
        self._write("ERROR", f"Error {code}: {message}" + (f" ({detail})" if detail else ""))
