"""Read and write the JAAS login.conf of CCM 4.5 (guide 2.2 and 6.1): one entry per Windows domain.

Why: sites migrating from CCM have this file; importing it carries their realms over unchanged, and exporting
gives admins the same reviewable text they know. The grammar is the JAAS one (Java's ConfigFile):

    name { module.Class flag option=value option="value" ... ; };

with // and /* */ comments and any whitespace. Only Krb5LoginModule entries with keyTab and principal mean
something to us; other options are kept as read (and written back in the guide's canonical form).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

KRB5_MODULE = "com.sun.security.auth.module.Krb5LoginModule"
FLAGS = ("required", "requisite", "sufficient", "optional")
#: The acceptor options of the guide's entries, in its order (keyTab and principal follow).
STANDARD_OPTIONS = {"storeKey": "true", "useKeyTab": "true", "refreshKrb5Config": "true", "isInitiator": "false"}


class LoginConfError(ValueError):
    """Bad login.conf text; `line` is 1-based (0 when the problem is not at one place)."""

    def __init__(self, message: str, line: int = 0) -> None:
        self.message = message
        self.line = line
        super().__init__(f"line {line}: {message}" if line else message)


@dataclass(frozen=True)
class LoginEntry:
    """One login.conf entry: the domain (entry name), keytab path and service principal."""

    name: str
    keytab: str
    principal: str
    flag: str = "required"
    options: dict[str, str] = field(default_factory=lambda: dict(STANDARD_OPTIONS))
    line: int = 0


@dataclass(frozen=True)
class _Token:
    kind: str  # "word", "string" or the punctuation itself
    text: str
    line: int


_PUNCT = "{};="
_WORD = re.compile(r"[^\s{};=\"/]+|/(?![/*])")


def _tokens(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, line, n = 0, 1, len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
        elif c.isspace():
            i += 1
        elif text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                raise LoginConfError("comment '/*' is never closed", line)
            line += text.count("\n", i, end)
            i = end + 2
        elif c in _PUNCT:
            tokens.append(_Token(c, c, line))
            i += 1
        elif c == '"':
            start_line, i, chars = line, i + 1, []
            while True:
                if i >= n:
                    raise LoginConfError("quoted value is never closed", start_line)
                c = text[i]
                if c == '"':
                    i += 1
                    break
                if c == "\\" and i + 1 < n:  # Java's StreamTokenizer: \" and \\ escapes
                    chars.append(text[i + 1])
                    i += 2
                    continue
                if c == "\n":
                    raise LoginConfError("quoted value runs past the end of the line", start_line)
                chars.append(c)
                i += 1
            tokens.append(_Token("string", "".join(chars), start_line))
        else:
            m = _WORD.match(text, i)
            if not m:  # pragma: no cover - _WORD matches every other character
                raise LoginConfError(f"unexpected character {c!r}", line)
            # a path like /home/x is a word; greedily take '/' that does not start a comment
            word = m.group()
            j = m.end()
            while j < n and (m2 := _WORD.match(text, j)):
                word += m2.group()
                j = m2.end()
            tokens.append(_Token("word", word, line))
            i = j
    return tokens


class _Parser:
    def __init__(self, tokens: list[_Token], last_line: int) -> None:
        self.tokens, self.pos, self.last_line = tokens, 0, last_line

    def peek(self) -> _Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def next(self, expected: str) -> _Token:
        tok = self.peek()
        if tok is None:
            raise LoginConfError(f"unexpected end of file, expected {expected}", self.last_line)
        self.pos += 1
        return tok

    def expect(self, punct: str, after: str) -> _Token:
        tok = self.next(f"'{punct}' {after}")
        if tok.kind != punct:
            raise LoginConfError(f"expected '{punct}' {after}, found {tok.text!r}", tok.line)
        return tok

    def value(self, what: str) -> _Token:
        tok = self.next(what)
        if tok.kind not in ("word", "string"):
            raise LoginConfError(f"expected {what}, found {tok.text!r}", tok.line)
        return tok

    def entry(self) -> LoginEntry:
        name = self.value("an entry name")
        self.expect("{", f"after entry name {name.text!r}")
        modules: list[tuple[_Token, str, dict[str, str], dict[str, int]]] = []
        while (tok := self.peek()) is not None and tok.kind != "}":
            module = self.value("a login module class name")
            flag = self.value(f"a flag ({'/'.join(FLAGS)}) after {module.text}")
            if flag.text.lower() not in FLAGS:
                raise LoginConfError(f"flag must be one of {', '.join(FLAGS)}, found {flag.text!r}", flag.line)
            options: dict[str, str] = {}
            lines: dict[str, int] = {}
            while (tok := self.peek()) is not None and tok.kind != ";":
                key = self.value("an option name or ';'")
                if key.kind != "word":
                    raise LoginConfError(f"expected an option name, found quoted {key.text!r}", key.line)
                self.expect("=", f"after option {key.text!r}")
                val = self.value(f"a value for option {key.text!r}")
                if key.text in options:
                    raise LoginConfError(f"option {key.text!r} given twice", key.line)
                options[key.text], lines[key.text] = val.text, key.line
            self.expect(";", f"at the end of the {module.text} options")
            modules.append((module, flag.text.lower(), options, lines))
        self.expect("}", f"to close entry {name.text!r}")
        self.expect(";", f"after the '}}' of entry {name.text!r}")
        krb5 = [m for m in modules if m[0].text == KRB5_MODULE]
        if len(krb5) != 1:
            found = ", ".join(m[0].text for m in modules) or "none"
            raise LoginConfError(f"entry {name.text!r} needs exactly one {KRB5_MODULE} (found: {found})", name.line)
        module, flag, options, lines = krb5[0]
        for required in ("keyTab", "principal"):
            if not options.get(required):
                raise LoginConfError(f"entry {name.text!r} has no {required}=...", module.line)
        if options.get("isInitiator", "false").lower() != "false":
            raise LoginConfError(
                f"entry {name.text!r}: isInitiator must be false (the server accepts tickets)", lines["isInitiator"]
            )
        if options.get("useKeyTab", "true").lower() != "true":
            raise LoginConfError(f"entry {name.text!r}: useKeyTab must be true", lines["useKeyTab"])
        rest = {k: v for k, v in options.items() if k not in ("keyTab", "principal")}
        return LoginEntry(name.text, options["keyTab"], options["principal"], flag, rest, name.line)


def parse(text: str) -> list[LoginEntry]:
    """Parse login.conf text into entries; LoginConfError names the line of the first problem."""
    if (nul := text.find("\x00")) >= 0:  # no name, path or principal holds one (and PostgreSQL refuses it)
        raise LoginConfError("a NUL character", text.count("\n", 0, nul) + 1)
    parser = _Parser(_tokens(text), text.count("\n") + 1)
    entries: list[LoginEntry] = []
    seen: dict[str, int] = {}
    while parser.peek() is not None:
        entry = parser.entry()
        key = entry.name.lower()
        if key in seen:
            raise LoginConfError(f"entry {entry.name!r} already defined on line {seen[key]}", entry.line)
        seen[key] = entry.line
        entries.append(entry)
    return entries


_PLAIN = re.compile(r"(?:[^\s{};=\"/\x00]|/(?![/*]))+")  # one word as `_tokens` reads it (no NUL: refused)


def _quote(value: str) -> str:
    if "\n" in value or "\x00" in value:  # a quoted value ends with its line; `parse` refuses a NUL
        raise LoginConfError(f"{value!r} cannot be written in login.conf: it holds a line break or a NUL")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _value(value: str) -> str:
    """A name or value as one word where it is one, quoted otherwise (spaces, braces, '=', comments)."""
    return value if _PLAIN.fullmatch(value) else _quote(value)


def render(entries: Iterable[LoginEntry]) -> str:
    """Write entries in the exact layout of guide 6.1 (4-space indent, keyTab and principal quoted, last),
    so that `parse` reads back what was written; LoginConfError for a value no line can hold."""
    out: list[str] = []
    for e in entries:
        options = {**STANDARD_OPTIONS, **e.options}
        out.append(f"{_value(e.name)} {{")
        out.append(f"    {KRB5_MODULE} {e.flag}")
        out.extend(f"    {k}={_value(v)}" for k, v in options.items())
        out.append(f"    keyTab={_quote(e.keytab)}")
        out.append(f"    principal={_quote(e.principal)};")
        out.append("};")
    return "\n".join(out) + ("\n" if out else "")


def entries_from_realms(realms: Iterable) -> list[LoginEntry]:
    """The login.conf entries equivalent to KerberosRealm rows (what Save wrote in CCM's conf/)."""
    return [LoginEntry(name=r.domain, keytab=r.keytab_path, principal=r.service_principal) for r in realms]
