"""Files given to the commands (`utils.commands.read_text`, `read_password`): one that cannot be read as
text (binary, a DER certificate for a PEM one, a directory, a NUL) ends in a one-line error, never a
traceback. Two of these were UnicodeDecodeError tracebacks. And the watchers' loop (`watch`)."""

from __future__ import annotations

import logging

import pytest
from django.core.management import CommandError, call_command

from autoenroll.server.utils.commands import watch

pytestmark = pytest.mark.django_db

ADD = ["add", "--customer", "acme", "--domain", "test.com", "--address", "10.0.0.1"]
ADD += ["--users-base-dn", "CN=Users,DC=test,DC=com", "--login-dn", "CN=ccm,CN=Users,DC=test,DC=com"]
COMMANDS = {
    "adservers add --ca-file": ("adservers", [*ADD, "--password-file", "{password}", "--ca-file", "{file}"]),
    "adservers add --password-file": ("adservers", [*ADD, "--password-file", "{file}"]),
    "adservers import": ("adservers", ["import", "{file}", "--customer", "acme"]),
    "realms import": ("realms", ["import", "{file}"]),
    "certificates revoke --file": ("certificates", ["revoke", "--file", "{file}", "--reason", "superseded"]),
    "certificates issue --csr": (
        "certificates",
        ["issue", "--customer", "acme", "--principal", "u@T", "--csr", "{file}"],
    ),
    "admins add --password-file": ("admins", ["add", "someone", "--super", "--password-file", "{file}"]),
}
CONTENTS = {  # what the file holds, and what the error says
    "binary": (b"0\x82\x01\xff\xfe\x80 DER, not PEM", "not UTF-8 text"),
    "NUL": (b"a\x00b\n", "NUL"),
    "directory": (None, "cannot read"),
}


@pytest.mark.parametrize("content", CONTENTS.values(), ids=CONTENTS)
@pytest.mark.parametrize(("command", "args"), COMMANDS.values(), ids=COMMANDS)
def test_a_file_that_is_no_text_of_the_kind_is_a_one_line_error(acme, tmp_path, command, args, content):
    content, says = content
    file, password = tmp_path / "given", tmp_path / "password"
    if content is None:
        file.mkdir()
    else:
        file.write_bytes(content)
    password.write_text("Secret-Passw0rd-1\n")
    with pytest.raises(CommandError) as refused:
        call_command(command, *[a.format(file=file, password=password) for a in args])
    assert "\n" not in str(refused.value).strip()
    if not (command == "certificates" and args[0] == "issue"):  # a CSR is read as bytes: PEM or DER
        assert says in str(refused.value)


def test_a_watcher_round_that_fails_is_logged_with_its_traceback_and_the_others_go_on(caplog):
    turns = []

    def fails():
        raise ValueError("the CA key cannot be read")

    def counts():
        turns.append(1)
        if len(turns) == 2:
            raise KeyboardInterrupt  # the watcher stopped (SIGTERM from `serve` at its end)
        yield "a round's line"

    with caplog.at_level(logging.INFO, logger="autoenroll.watch"), pytest.raises(KeyboardInterrupt):
        watch(0, ("signing", fails), ("counting", counts))
    failures = [r for r in caplog.records if r.getMessage() == "signing failed"]
    assert len(failures) == 2 and failures[0].exc_info[0] is ValueError
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.INFO] == [
        "every 0 s: signing, counting",
        "a round's line",
    ]
