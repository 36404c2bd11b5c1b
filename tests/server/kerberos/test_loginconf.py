"""login.conf (guide 2.2 / 6.1): parsing, writing, and the `realms import/export/delete` commands."""

from __future__ import annotations

import os
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from hypothesis import example, given, settings
from hypothesis import strategies as st

from autoenroll.server.kerberos import loginconf
from autoenroll.server.kerberos.models import KerberosRealm

# Guide 6.1 verbatim, including the two trailing blanks the guide has on every line but the last.
GUIDE_6_1 = "  \n".join(
    [
        "de.com {",
        "    com.sun.security.auth.module.Krb5LoginModule required",
        "    storeKey=true",
        "    useKeyTab=true",
        "    refreshKrb5Config=true",
        "    isInitiator=false",
        '    keyTab="/home/lsc/keytab/fff.keytab"',
        '    principal="HTTP/certmgr.de.com@DE.COM";',
        "};",
        "ny.com {",
        "    com.sun.security.auth.module.Krb5LoginModule required",
        "    storeKey=true",
        "    useKeyTab=true",
        "    refreshKrb5Config=true",
        "    isInitiator=false",
        '    keyTab="/home/lsc/keytab/abc.keytab"',
        '    principal="HTTP/ccm.ny.com@NY.COM";',
        "};",
    ]
).replace("};  \n", "};\n")
OPTIONS = {"storeKey": "true", "useKeyTab": "true", "refreshKrb5Config": "true", "isInitiator": "false"}
HYPOTHESIS = settings(max_examples=int(os.environ.get("AUTOENROLL_HYPOTHESIS_EXAMPLES", "200")), deadline=None)


def realms(*args: str) -> str:
    out = StringIO()
    call_command("realms", *args, stdout=out)
    return out.getvalue()


def add(domain: str, keytab: str, principal: str) -> None:
    """A realm as `realms add` would save it, without its keytab check: these keytab paths are
    another server's (a Windows one, even), which only the import accepts, with a warning."""
    KerberosRealm.objects.create(domain=domain, keytab_path=keytab, service_principal=principal)


def rows() -> list[tuple[str, str, str]]:
    return [(r.domain, r.keytab_path, r.service_principal) for r in KerberosRealm.objects.all()]


def test_the_guides_6_1_example_parses_into_both_entries():
    assert loginconf.parse(GUIDE_6_1) == [
        loginconf.LoginEntry(
            "de.com", "/home/lsc/keytab/fff.keytab", "HTTP/certmgr.de.com@DE.COM", "required", OPTIONS, 1
        ),
        loginconf.LoginEntry(
            "ny.com", "/home/lsc/keytab/abc.keytab", "HTTP/ccm.ny.com@NY.COM", "required", OPTIONS, 10
        ),
    ]


def test_writing_reproduces_the_guides_layout():
    assert loginconf.render(loginconf.parse(GUIDE_6_1)) == GUIDE_6_1.replace("  \n", "\n") + "\n"


def test_comments_blank_space_and_unquoted_values_are_tolerated():
    text = """
    // exported from CCM 4.5
    /* test.com: the
       first customer */ test.com{com.sun.security.auth.module.Krb5LoginModule   required
        keyTab=/etc/autoenroll/ccm.keytab   // no quotes
        principal = HTTP/ccm.test.com@TEST.COM
        isInitiator="false";};
    """
    (entry,) = loginconf.parse(text)
    assert (entry.name, entry.keytab, entry.principal, entry.line) == (
        "test.com",
        "/etc/autoenroll/ccm.keytab",
        "HTTP/ccm.test.com@TEST.COM",
        4,
    )


def test_windows_paths_and_escapes_survive_a_round_trip():
    entry = loginconf.LoginEntry("test.com", 'C:/kerberos/my "ccm".keytab', "HTTP/ccm.test.com@TEST.COM")
    assert loginconf.parse(loginconf.render([entry]))[0].keytab == 'C:/kerberos/my "ccm".keytab'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("de.com {\n  com.sun.security.auth.module.Krb5LoginModule required\n  keyTab=x\n", "line 4: unexpected end"),
        ("de.com {\n  com.sun.security.auth.module.Krb5LoginModule bogus\n};", "line 2: flag must be one of"),
        (
            'a {\n com.sun.security.auth.module.Krb5LoginModule required\n keyTab="/x\n principal=y; };',
            "line 3: quoted",
        ),
        (
            "a {\n com.sun.security.auth.module.Krb5LoginModule required\n principal=HTTP/a@B;\n};",
            "line 2: .*no keyTab",
        ),
        ("a {\n com.sun.security.auth.module.Krb5LoginModule required keyTab=x keyTab=y;\n};", "line 2: .*given twice"),
        ("a {\n /* never closed\n};", "line 2: comment '/\\*' is never closed"),
        (
            "a {\n com.sun.security.auth.module.Krb5LoginModule required keyTab=x principal=y\n}",
            "line 3: expected an option name or ';', found '}'",
        ),
        ("a {\n com.sun.security.auth.module.Krb5LoginModule required keyTab x;\n};", "line 2: expected '='"),
        ("a {\n other.Module required;\n};", "line 1: .*needs exactly one .*Krb5LoginModule"),
        (
            "a {\n com.sun.security.auth.module.Krb5LoginModule required\n isInitiator=true keyTab=x principal=y;\n};",
            "line 3: .*isInitiator must be false",
        ),
        (
            GUIDE_6_1
            + "\n// again\nDE.com { com.sun.security.auth.module.Krb5LoginModule required keyTab=k principal=p; };",
            "line 20: entry 'DE.com' already defined on line 1",
        ),
    ],
    ids=["eof", "flag", "quote", "no-keytab", "twice", "comment", "semicolon", "equals", "module", "initiator", "dup"],
)
def test_bad_input_is_an_error_that_names_the_line(text, message):
    with pytest.raises(loginconf.LoginConfError, match=message):
        loginconf.parse(text)


@HYPOTHESIS
@given(st.text() | st.text(alphabet='ab {};="/*\\\n\t'))
def test_any_text_is_entries_or_an_error_that_names_the_line(text):
    try:
        loginconf.parse(text)
    except loginconf.LoginConfError as exc:
        assert 0 <= exc.line <= text.count("\n") + 1


_option = st.from_regex(r"[A-Za-z][A-Za-z0-9]*", fullmatch=True).filter(
    lambda name: name not in ("keyTab", "principal", "isInitiator", "useKeyTab")
)


@HYPOTHESIS
@given(
    st.lists(
        st.tuples(st.text(min_size=1), st.text(min_size=1), st.text(min_size=1), st.dictionaries(_option, st.text())),
        max_size=3,
        unique_by=lambda entry: entry[0].lower(),
    )
)
@example([("a b", "/k", "p", {"storeKey": "x y"})])  # found by Hypothesis: written unquoted, read back as an error
@example([("x", "/k", "p", {"debug": ""})])
@example([("x{y};", "/k", "p", {"debug": "a//b /*c*/ d=e"})])
def test_what_is_written_reads_back_the_same(entries):
    written = [loginconf.LoginEntry(n, k, p, options={**OPTIONS, **o}) for n, k, p, o in entries]
    try:
        text = loginconf.render(written)
    except loginconf.LoginConfError as exc:
        assert "a line break or a NUL" in str(exc)
        assert any(c in value for n, k, p, o in entries for value in (n, k, p, *o.values()) for c in "\n\x00")
        return
    read = loginconf.parse(text)
    assert [(e.name, e.keytab, e.principal, e.options) for e in read] == [
        (e.name, e.keytab, e.principal, e.options) for e in written
    ]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("domain", "test com", "A Windows domain name"),
        ("domain", "test.com}", "A Windows domain name"),
        ("keytab_path", "/k/\nccm.keytab", "without line breaks"),
        ("keytab_path", "/k/ccm.keytab\n", "without line breaks"),  # `$` matched before a final one
        ("domain", "test.com\n", "A Windows domain name"),
        ("service_principal", "HTTP/ccm.test.com@TEST.COM\n", "A service principal"),
    ],
)
def test_a_realm_login_conf_could_not_carry_is_refused(field, value, message):
    realm = KerberosRealm(
        domain="test.com", keytab_path="/k/ccm.keytab", service_principal="HTTP/ccm.test.com@TEST.COM"
    )
    setattr(realm, field, value)
    with pytest.raises(ValidationError, match=message):
        realm.clean_fields()


@pytest.mark.django_db
def test_import_creates_one_realm_per_entry_and_reports_it(tmp_path, acme):
    conf = tmp_path / "login.conf"
    conf.write_text(GUIDE_6_1)
    out = realms("import", str(conf), "--customer", "acme")
    assert "realm de.com created (HTTP/certmgr.de.com@DE.COM, /home/lsc/keytab/fff.keytab)" in out
    assert "realm ny.com created" in out and "2 entries read" in out
    # the guide's keytabs are on its server, not here: imported, with the reason users would get error 37
    assert "warning: /home/lsc/keytab/fff.keytab: no such file: copy the keytab there" in out
    assert rows() == [
        ("de.com", "/home/lsc/keytab/fff.keytab", "HTTP/certmgr.de.com@DE.COM"),
        ("ny.com", "/home/lsc/keytab/abc.keytab", "HTTP/ccm.ny.com@NY.COM"),
    ]
    assert {r.customer for r in KerberosRealm.objects.all()} == {acme}
    java = "com.sun.security.jgss.accept {\n  com.sun.security.auth.module.Krb5LoginModule required\n"
    java += "  keyTab=k principal=p;\n};\n"
    conf.write_text(GUIDE_6_1 + java)
    assert "entry com.sun.security.jgss.accept skipped: Java's default login entry" in realms("import", str(conf))
    assert KerberosRealm.objects.count() == 2
    conf.write_text(GUIDE_6_1)
    again = realms("import", str(conf))
    assert "realm de.com unchanged" in again and "realm ny.com unchanged" in again


@pytest.mark.django_db
def test_export_then_import_round_trips(tmp_path):
    add("test.com", "/srv/k/ccm.keytab", "HTTP/ccm.test.com@TEST.COM")
    add("de.com", "C:/kerberos/de.keytab", "HTTP/certmgr.de.com@DE.COM")
    before = rows()
    conf = tmp_path / "login.conf"
    assert "2 realms written" in realms("export", str(conf))
    assert conf.read_text() == realms("export")  # stdout by default, same text
    assert conf.read_text().startswith("de.com {\n    com.sun.security.auth.module.Krb5LoginModule required\n")
    realms("delete", "test.com")
    realms("delete", "de.com")
    assert rows() == []
    realms("import", str(conf))
    assert rows() == before


@pytest.mark.django_db
def test_import_is_all_or_nothing(tmp_path):
    add("de.com", "/old.keytab", "HTTP/old.de.com@DE.COM")
    conf = tmp_path / "login.conf"
    conf.write_text(
        GUIDE_6_1 + "\nbad.com {\n com.sun.security.auth.module.Krb5LoginModule required keyTab=/k principal=ccm;\n};\n"
    )
    with pytest.raises(CommandError, match=r"line 19: entry 'bad.com': service_principal: .*nothing imported"):
        realms("import", str(conf))
    assert rows() == [("de.com", "/old.keytab", "HTTP/old.de.com@DE.COM")]  # de.com not updated, ny.com not made


@pytest.mark.django_db
def test_import_of_a_broken_file_names_file_and_line_and_changes_nothing(tmp_path):
    conf = tmp_path / "login.conf"
    conf.write_text(GUIDE_6_1.replace('principal="HTTP/ccm.ny.com@NY.COM";', 'principal="HTTP/ccm.ny.com@NY.COM"'))
    with pytest.raises(CommandError, match=rf"{conf}: line 18: expected an option name or ';', found '}}'"):
        realms("import", str(conf))
    assert rows() == []


@pytest.mark.django_db
def test_delete_of_an_unknown_domain_is_an_error():
    with pytest.raises(CommandError, match="no realm with domain 'nope.com'"):
        realms("delete", "nope.com")


@pytest.mark.django_db
def test_realms_add_checks_the_keytab_as_keytab_check_does(samba_ad, tmp_path):
    """The CLI refuses what the page and the API refuse: a missing keytab, one without the SPN."""
    spn, other = "HTTP/ccm.test.com@TEST.COM", "HTTP/other.test.com@TEST.COM"
    add = ("add", "--domain", "test.com", "--keytab")
    with pytest.raises(CommandError, match="no such file"):
        realms(*add, str(tmp_path / "gone.keytab"), "--principal", spn)
    with pytest.raises(CommandError, match=f"no key for {other}"):
        realms(*add, str(samba_ad.keytab), "--principal", other)
    assert "realm test.com added" in realms(*add, str(samba_ad.keytab), "--principal", spn)


def test_a_nul_character_is_an_error_that_names_its_line():
    """Its principal passed the realm's validation and PostgreSQL refused it at save."""
    with pytest.raises(loginconf.LoginConfError, match="line 8: a NUL character"):
        loginconf.parse(GUIDE_6_1.replace("HTTP/certmgr.de.com", "HTTP/certmgr\x00.de.com"))
