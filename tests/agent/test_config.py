"""autoenroll.conf: the guide's keys unchanged, its misspelling accepted, locations and clear errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from autoenroll.agent import config

GUIDE_CONF = """\
; autoenroll.conf as deployed next to the logon script (guide 3.1)
requestpath=https://ccm.test.com:8443
issusername=autoenroll S/MIME CA
days=20
domainname=test.com
customeruri=acme
orgid=1
"""


def test_the_guides_keys_and_its_issusername_spelling(tmp_path):
    path = tmp_path / "autoenroll.conf"
    path.write_text(GUIDE_CONF)
    conf = config.load(path)
    assert (conf.requestpath, conf.issuername, conf.days, conf.domainname, conf.customeruri, conf.orgid) == (
        "https://ccm.test.com:8443",
        "autoenroll S/MIME CA",
        20,
        "test.com",
        "acme",
        "1",
    )
    assert conf.warnings == () and conf.host == "ccm.test.com"


def test_optional_keys_default(tmp_path):
    path = tmp_path / "autoenroll.conf"
    path.write_text(GUIDE_CONF.replace("days=20\n", "").replace("orgid=1\n", ""))
    conf = config.load(path)
    assert conf.days == config.DEFAULT_DAYS and conf.orgid is None and conf.keytype == "rsa-3072"


def test_unknown_keys_warn_with_file_and_line(tmp_path):
    path = tmp_path / "autoenroll.conf"
    path.write_text(GUIDE_CONF + "capicompath = C:\\capicom.dll\nnonsense\n")
    conf = config.load(path)
    assert conf.warnings == (
        f"{path}:8: unknown key 'capicompath' ignored",
        f"{path}:9: ignored line (not key = value): 'nonsense'",
    )


@pytest.mark.parametrize("key", config.REQUIRED)
def test_a_missing_required_key_is_a_clear_error(tmp_path, key):
    path = tmp_path / "autoenroll.conf"
    lines = [line for line in GUIDE_CONF.splitlines() if not line.startswith(key if key != "issuername" else "issus")]
    path.write_text("\n".join(lines))
    with pytest.raises(config.ConfigError, match=f"required key {key} missing in {path}"):
        config.load(path)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("requestpath=http://ccm.test.com", "requestpath must be an https:// URL"),
        ("days=twenty", "days must be a whole number"),
        ("days=²", "days must be a whole number"),  # isdigit() takes it; int() did not: a crash, not this error
        ("keytype=dsa", "keytype must be one of"),
    ],
)
def test_bad_values(tmp_path, line, message):
    path = tmp_path / "autoenroll.conf"
    path.write_text(GUIDE_CONF + line + "\n")
    with pytest.raises(config.ConfigError, match=message):
        config.load(path)


def test_locations_later_files_override_single_keys(tmp_path):
    system, beside, user = tmp_path / "system.conf", tmp_path / "beside.conf", tmp_path / "user.conf"
    system.write_text(GUIDE_CONF)
    beside.write_text("days=10\n")
    user.write_text("orgid=7\n")
    conf = config.load(search=[system, beside, user, tmp_path / "absent.conf"])
    assert (conf.days, conf.orgid, conf.customeruri) == (10, "7", "acme")
    assert conf.sources == (str(system), str(beside), str(user))


def test_default_locations_are_system_program_user(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    paths = config.default_paths()
    assert paths[0] == config.system_config_path()
    assert paths[2] == tmp_path / "xdg" / "autoenroll" / "autoenroll.conf"
    if sys.platform.startswith("linux"):
        assert paths[0].as_posix() == "/etc/autoenroll/autoenroll.conf"


def test_no_configuration_anywhere(tmp_path):
    with pytest.raises(config.ConfigError, match="no autoenroll.conf found"):
        config.load(search=[tmp_path / "a.conf"])


def test_the_command_says_what_is_missing_and_exits_78(tmp_path):
    path = tmp_path / "autoenroll.conf"
    path.write_text("requestpath=https://ccm.test.com\n")
    proc = subprocess.run(
        [sys.executable, "-m", "autoenroll.agent", "--config", str(path), "run"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 78
    assert "required key issuername, domainname missing" in proc.stderr
    log = tmp_path / ".local/state/autoenroll/log/autoenroll.log"
    assert "configuration: required key issuername" in log.read_text()


def test_bad_command_line_exits_64_not_a_guide_number(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "autoenroll.agent", "frobnicate"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 64
