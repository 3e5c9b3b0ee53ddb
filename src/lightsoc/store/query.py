"""The search language: a Lucene/KQL-like query parsed to a tiny AST.

    source.ip:10.0.0.5 AND url.query:*union* AND NOT http.response.status_code:404

Grammar (operators are case-insensitive, precedence NOT > AND > OR)::

    query   := or EOF
    or      := and (("OR" | "||") and)*
    and     := not (("AND" | "&&")? not)*          # adjacent terms: implicit AND
    not     := ("NOT" | "!" | "-") not | primary
    primary := "(" or ")" | WORD ":" value | WORD | "PHRASE"
    value   := "(" or ")" | "[" bound "TO" bound "]" | CMP bound | WORD | "PHRASE"

Ranges may mix `[`/`{` and `]`/`}`; `*` is an open end. Inside a field group
`field:(a OR >5)` every term applies to that field. A bare word or phrase is a
full-text search. `field:*` and `_exists_:field` test presence. In values,
`*` and `?` are wildcards and a backslash escapes any character.

`compile_query` turns the AST into a parameterised SQL predicate (see
`query_sql`): values only ever travel as parameters.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

MAX_DEPTH = 64  # nested parentheses and NOTs; deeper queries are refused
KEYWORDS = ("AND", "OR", "NOT")


class QueryError(ValueError):
    """A query that cannot be parsed or compiled; the message says what and where."""


@dataclass
class Compiled:
    """A boolean SQL expression with `?` placeholders and their values, in order."""

    sql: str
    params: list[Any]


# -- AST ------------------------------------------------------------------


class Wild(enum.Enum):
    """An unescaped wildcard in a value."""

    STAR = "*"
    ONE = "?"


Part = str | Wild


@dataclass(frozen=True)
class Value:
    """A decoded value: literal text runs and wildcards; `pos` is its column."""

    parts: tuple[Part, ...]
    pos: int
    raw: str

    @property
    def has_wild(self) -> bool:
        return any(isinstance(p, Wild) for p in self.parts)

    @property
    def is_star(self) -> bool:
        return bool(self.parts) and all(p is Wild.STAR for p in self.parts)

    @property
    def text(self) -> str:
        """The value as text, wildcards rendered as themselves."""
        return "".join(p.value if isinstance(p, Wild) else p for p in self.parts)


class Node:
    """Base class of AST nodes."""


@dataclass(frozen=True)
class MatchAll(Node):
    pass


@dataclass(frozen=True)
class And(Node):
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or(Node):
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not(Node):
    item: Node


@dataclass(frozen=True)
class Text(Node):
    """Full-text search (no field)."""

    value: Value


@dataclass(frozen=True)
class Term(Node):
    """`field:value`: equality, wildcard match or CIDR."""

    field: str
    value: Value
    pos: int


@dataclass(frozen=True)
class Exists(Node):
    field: str
    pos: int


@dataclass(frozen=True)
class Range(Node):
    """A range or comparison; `None` bounds are open."""

    field: str
    lo: Value | None
    hi: Value | None
    lo_incl: bool
    hi_incl: bool
    pos: int


# -- tokenizer ------------------------------------------------------------


@dataclass(frozen=True)
class Tok:
    kind: str  # LP RP LBR RBR TO AND OR NOT COLON CMP WORD QUOTED EOF
    text: str
    pos: int


def _word(text: str, i: int, stops: str) -> int:
    """End of the bare word starting at `i` (backslash escapes any character)."""
    n = len(text)
    while i < n and not text[i].isspace() and text[i] not in stops:
        if text[i] == "\\":
            if i + 1 >= n:
                raise QueryError(f"dangling escape '\\' at position {i}")
            i += 1
        i += 1
    return i


def _quoted(text: str, i: int) -> int:
    """End (after the closing quote) of the phrase whose opening quote is at `i`."""
    j = i + 1
    while j < len(text):
        if text[j] == "\\":
            j += 2
        elif text[j] == '"':
            return j + 1
        else:
            j += 1
    raise QueryError(f"unterminated quoted phrase starting at position {i}")


def tokenize(text: str) -> list[Tok]:
    """Split a query into tokens.

    Lexing is contextual: right after `field:`, inside a field group and inside
    a range, `:` is part of a value (IPv6, times) and `[ { < >` start ranges
    and comparisons.
    """
    toks: list[Tok] = []
    groups: list[bool] = []  # per open "(": is it a field group?
    in_value = in_range = False
    i, n = 0, len(text)
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            toks.append(Tok("EOF", "", n))
            return toks
        c, start = text[i], i
        in_group = bool(groups) and groups[-1]
        valuey = in_value or in_group
        nxt = text[i + 1] if i + 1 < n else ""
        if c == '"':
            i = _quoted(text, i)
            kind, in_value = "QUOTED", False
        elif in_range:
            if c in "]}":
                kind, i, in_range = "RBR", i + 1, False
            elif c in "[{()":
                raise QueryError(f"unexpected '{c}' inside range at position {i}")
            else:
                i = _word(text, i, "[]{}()")
                kind = "TO" if text[start:i].upper() == "TO" else "WORD"
        elif c == "(":
            groups.append(valuey)
            kind, i, in_value = "LP", i + 1, False
        elif c == ")":
            if groups:
                groups.pop()
            kind, i, in_value = "RP", i + 1, False
        elif valuey and c in "[{":
            kind, i, in_range, in_value = "LBR", i + 1, True, False
        elif valuey and c in "<>":
            kind, i, in_value = "CMP", i + (2 if nxt == "=" else 1), True
        elif not in_value and c + nxt in ("&&", "||"):
            kind, i = ("AND" if c == "&" else "OR"), i + 2
        elif not in_value and c == "!":
            kind, i = "NOT", i + 1
        elif not in_value and c in "-+" and nxt and not nxt.isspace() and nxt != ")":
            i += 1
            if c == "+":  # Lucene "required": terms are ANDed anyway
                continue
            kind = "NOT"
        elif not valuey and c == ":":
            kind, i, in_value = "COLON", i + 1, True
        else:
            i = _word(text, i, "()" if valuey else "():")
            word = text[start:i]
            kind = word.upper() if not in_value and word.upper() in KEYWORDS else "WORD"
            in_value = False
        toks.append(Tok(kind, text[start:i], start))


def decode(tok: Tok) -> Value:
    """The value of a WORD (with wildcards) or QUOTED (literal) token."""
    quoted = tok.kind == "QUOTED"
    raw = tok.text[1:-1] if quoted else tok.text
    parts: list[Part] = []
    buf: list[str] = []
    i = 0
    while i < len(raw):
        c = raw[i]
        if c == "\\" and i + 1 < len(raw):
            buf.append(raw[i + 1])
            i += 2
            continue
        if not quoted and c in "*?":
            if buf:
                parts.append("".join(buf))
                buf = []
            parts.append(Wild(c))
        else:
            buf.append(c)
        i += 1
    if buf or not parts:
        parts.append("".join(buf))
    return Value(tuple(parts), tok.pos, tok.text)


# -- parser ---------------------------------------------------------------

_TERM_START = ("WORD", "QUOTED", "LP", "NOT", "CMP", "LBR")


class _Parser:
    """Recursive descent over the token list; `field` is set inside field groups."""

    def __init__(self, toks: list[Tok]) -> None:
        self.toks = toks
        self.i = 0
        self.depth = 0

    def peek(self) -> Tok:
        return self.toks[self.i]

    def next(self) -> Tok:
        tok = self.toks[self.i]
        self.i = min(self.i + 1, len(self.toks) - 1)
        return tok

    def fail(self, tok: Tok, expected: str = "a term") -> QueryError:
        if tok.kind != "EOF":
            return QueryError(f"unexpected '{tok.text}' at position {tok.pos}; expected {expected}")
        prev = self.toks[self.i - 1] if self.i > 0 else None
        if prev is None or prev.kind == "EOF":
            return QueryError(f"query ends at position {tok.pos}; expected {expected}")
        return QueryError(
            f"query ends after '{prev.text}' at position {prev.pos}; expected {expected}"
        )

    def enter(self, tok: Tok) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise QueryError(f"query nested too deeply at position {tok.pos}")

    def parse(self) -> Node:
        if self.peek().kind == "EOF":
            return MatchAll()
        node = self.or_(None)
        tok = self.peek()
        if tok.kind == "RP":
            raise QueryError(f"unbalanced parenthesis: unexpected ')' at position {tok.pos}")
        if tok.kind != "EOF":
            raise self.fail(tok, "an operator or the end of the query")
        return node

    def or_(self, field: str | None) -> Node:
        items = [self.and_(field)]
        while self.peek().kind == "OR":
            self.next()
            items.append(self.and_(field))
        return items[0] if len(items) == 1 else Or(tuple(items))

    def and_(self, field: str | None) -> Node:
        items = [self.not_(field)]
        while True:
            kind = self.peek().kind
            if kind == "AND":
                self.next()
            elif kind not in _TERM_START:
                break
            items.append(self.not_(field))
        return items[0] if len(items) == 1 else And(tuple(items))

    def not_(self, field: str | None) -> Node:
        if self.peek().kind != "NOT":
            return self.primary(field)
        tok = self.next()
        self.enter(tok)
        node = Not(self.not_(field))
        self.depth -= 1
        return node

    def group(self, field: str | None) -> Node:
        """`( or )`, the "(" already peeked."""
        lp = self.next()
        self.enter(lp)
        node = self.or_(field)
        if self.peek().kind != "RP":
            if self.peek().kind == "EOF":
                raise QueryError(
                    f"unbalanced parenthesis: '(' at position {lp.pos} is never closed"
                )
            raise self.fail(self.peek(), "')' or an operator")
        self.next()
        self.depth -= 1
        return node

    def primary(self, field: str | None) -> Node:
        tok = self.peek()
        if tok.kind == "LP":
            return self.group(field)
        if field is not None:
            return self.value(field, tok.pos)
        if tok.kind == "WORD":
            self.next()
            if self.peek().kind == "COLON":
                self.next()
                return self.field_value(decode(tok).text, tok)
            value = decode(tok)
            return MatchAll() if value.is_star else Text(value)
        if tok.kind == "QUOTED":
            return Text(decode(self.next()))
        raise self.fail(tok)

    def field_value(self, name: str, ftok: Tok) -> Node:
        if name == "_exists_":
            tok = self.next()
            if tok.kind != "WORD":
                raise self.fail(tok, "a field name after '_exists_:'")
            return Exists(decode(tok).text, tok.pos)
        if self.peek().kind == "LP":
            return self.group(name)
        return self.value(name, ftok.pos)

    def value(self, field: str, pos: int) -> Node:
        tok = self.next()
        if tok.kind in ("WORD", "QUOTED"):
            value = decode(tok)
            return Exists(field, pos) if value.is_star else Term(field, value, pos)
        if tok.kind == "CMP":
            bound = self.bound()
            if bound is None:
                raise QueryError(f"comparison needs a value at position {tok.pos}")
            if tok.text.startswith(">"):
                return Range(field, bound, None, tok.text == ">=", False, pos)
            return Range(field, None, bound, False, tok.text == "<=", pos)
        if tok.kind == "LBR":
            lo = self.bound()
            if self.peek().kind != "TO":
                raise self.fail(self.peek(), "'TO' in range")
            self.next()
            hi = self.bound()
            end = self.next()
            if end.kind != "RBR":
                if end.kind == "EOF":
                    raise QueryError(f"range '{tok.text}' at position {tok.pos} is never closed")
                raise self.fail(end, "']' or '}' closing the range")
            return Range(field, lo, hi, tok.text == "[", end.text == "]", pos)
        raise self.fail(tok, f"a value for '{field}'")

    def bound(self) -> Value | None:
        tok = self.peek()
        if tok.kind not in ("WORD", "QUOTED"):
            raise self.fail(tok, "a range bound")
        self.next()
        value = decode(tok)
        return None if tok.kind == "WORD" and value.is_star else value


def parse(text: str) -> Node:
    """Parse a query into an AST (raises QueryError)."""
    return _Parser(tokenize(text)).parse()


def compile_query(text: str, *, fields: Mapping[str, pa.DataType] | None = None) -> Compiled:
    """Compile a query to a parameterised SQL predicate over the event columns.

    `fields` maps column names to Arrow types (default: the ECS schema).
    """
    from lightsoc.store.query_sql import to_sql

    return to_sql(parse(text), fields)


def quote_ident(name: str) -> str:
    """A double-quoted SQL identifier; only for names from the schema."""
    if not name or "\x00" in name:
        raise ValueError(f"invalid identifier {name!r}")
    return '"' + name.replace('"', '""') + '"'
