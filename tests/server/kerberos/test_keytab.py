"""`keytab check` on real keytabs (Samba's export, MIT ktutil's RC4 one, broken files) and `keytab commands`."""

from __future__ import annotations

import subprocess
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from autoenroll.server.kerberos.keytab import check_keytab, read_keytab
from autoenroll.testbed import samba
from checks import ktutil_keytab


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("keytab", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_the_test_beds_aes_keytab_lists_every_principal_with_kvno_and_enctypes_and_no_warning(samba_ad):
    out, err = run("check", str(samba_ad.keytab), "--principal", f"HTTP/ccm.test.com@{samba.REALM}")
    assert err == ""
    for principal in samba.KEYTAB_PRINCIPALS:
        line = next(li for li in out.splitlines() if li.startswith(f"{principal}@{samba.REALM} "))
        assert "aes256-cts-hmac-sha1-96, aes128-cts-hmac-sha1-96" in line
    # the parser agrees with MIT's klist (kvno per principal, enctype numbers)
    klist = subprocess.run(
        ["klist", "-kte", str(samba_ad.keytab)], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    from_klist = [
        (int(kvno), principal, enctype.strip("()").removeprefix("DEPRECATED:"))
        for kvno, _date, _time, principal, enctype in (li.split() for li in klist.splitlines()[3:] if li.strip())
    ]
    assert from_klist == [(e.kvno, e.principal, e.enctype_name) for e in read_keytab(samba_ad.keytab)]


def test_an_rc4_only_principal_gets_a_warning(tmp_path):
    keytab = ktutil_keytab(tmp_path / "rc4.keytab", "HTTP/x@TEST.COM", "rc4-hmac")
    out, err = run("check", str(keytab))
    assert "HTTP/x@TEST.COM" in out and "arcfour-hmac" in out
    assert "warning: HTTP/x@TEST.COM has only RC4 keys" in err
    assert "msDS-SupportedEncryptionTypes=24" in err


def test_a_principal_with_an_aes_key_next_to_rc4_gets_no_weak_key_warning(tmp_path):
    keytab = ktutil_keytab(tmp_path / "mixed.keytab", "HTTP/x@TEST.COM", "rc4-hmac")
    ktutil_keytab(keytab, "HTTP/x@TEST.COM", "aes256-cts-hmac-sha1-96")  # wkt appends
    report = check_keytab(keytab)
    assert sorted(e.enctype for e in report.entries) == [18, 23]
    assert report.ok and report.warnings == []


def test_a_keytab_readable_by_others_gets_a_chmod_600_warning(samba_ad, tmp_path):
    keytab = tmp_path / "loose.keytab"
    keytab.write_bytes(samba_ad.keytab.read_bytes())
    keytab.chmod(0o644)
    _, err = run("check", str(keytab))
    assert f"mode 0644 lets group/others read the service keys; run chmod 600 {keytab}" in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"this is not a keytab", "does not start with 0x0501 or 0x0502"),
        (b"\x05\x02\x00\x00\x00\x40\x00\x01", "claims 64 bytes"),
        (b"\x05\x02", "holds no keys"),
    ],
    ids=["not-a-keytab", "truncated", "empty"],
)
def test_a_corrupt_keytab_is_an_error(tmp_path, content, message):
    keytab = tmp_path / "bad.keytab"
    keytab.write_bytes(content)
    keytab.chmod(0o600)
    with pytest.raises(CommandError, match=message):
        run("check", str(keytab))


def test_a_truncated_copy_of_a_real_keytab_is_an_error(samba_ad, tmp_path):
    keytab = tmp_path / "cut.keytab"
    keytab.write_bytes(samba_ad.keytab.read_bytes()[:-7])
    with pytest.raises(CommandError, match="cut.keytab: entry at byte"):
        run("check", str(keytab))


def test_a_missing_keytab_or_a_missing_principal_is_an_error(samba_ad, tmp_path):
    with pytest.raises(CommandError, match="no such file"):
        run("check", str(tmp_path / "nope.keytab"))
    with pytest.raises(CommandError, match="no key for HTTP/other.test.com@TEST.COM"):
        run("check", str(samba_ad.keytab), "--principal", "HTTP/other.test.com@TEST.COM")


def test_commands_print_the_guides_steps_with_aes_and_the_samba_equivalents():
    out, _ = run("commands", "--host", "ccm.test.com", "--realm", "TEST.COM", "--account", "ccm", "--out", "x.keytab")
    lines = out.splitlines()
    assert (
        "ktpass -princ HTTP/ccm.test.com@TEST.COM -mapuser ccm -crypto AES256-SHA1 -ptype KRB5_NT_PRINCIPAL "
        "-pass * -out x.keytab"
    ) in lines
    assert {"setspn -S HTTP/ccm.test.com ccm", "setspn -S HTTP/ccm ccm"} <= set(lines)
    assert {"samba-tool spn add HTTP/ccm.test.com ccm", "samba-tool spn add HTTP/ccm ccm"} <= set(lines)
    assert "msDS-SupportedEncryptionTypes: 24" in lines
    assert "dn: CN=ccm,CN=Users,DC=test,DC=com" in lines
    assert "samba-tool domain exportkeytab x.keytab --principal=HTTP/ccm.test.com" in lines
    assert "DES-CBC-MD5" not in out and "desonly" not in out  # the guide's DES keys are gone


def test_a_file_name_no_file_can_have_is_an_error_not_a_crash():
    """Found by schemathesis through the realm API: a NUL in the path was a 500."""
    assert check_keytab("/etc/ccm\x00.keytab", "HTTP/ccm.test.com@TEST.COM").errors == [
        "'/etc/ccm\\x00.keytab': not a usable file name"
    ]
