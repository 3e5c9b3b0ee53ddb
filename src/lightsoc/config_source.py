"""Where configuration values came from: YAML lines, `${ENV}` substitution, errors.

`read_yaml` composes the YAML into nodes so every value keeps its line,
substitutes `${VAR}` / `${VAR:-default}` in string scalars (`$${` is a literal
`${`) and returns plain data plus an `Origin`. `validation_error` turns a
pydantic `ValidationError` into one `ConfigError` per problem, each at the line
of the value (of the key for an unknown key, of the parent for a missing one).
Values that came from the environment are never shown; their `${VAR}` text is.
"""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, NoReturn, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

KeyPath = tuple[str | int, ...]
_ENV_RE = re.compile(r"\$(\$\{)|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|(\$\{)")
_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"


class ConfigError(Exception):
    """A configuration problem the user can fix; `str()` is one line.

    `errors` lists every problem found (this one first, ordered by line).
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.message, self.file, self.line, self.field = message, file, line, field
        self.errors: list[ConfigError] = [self]
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.file and self.line:
            where: str | None = f"{self.file}:{self.line}"
        else:
            where = self.file or (f"line {self.line}" if self.line else None)
        return ": ".join(p for p in (where, self.field, self.message) if p)


def field_str(path: Sequence[str | int]) -> str:
    """`('enrich', 'networks', 'office', 1)` -> `enrich.networks.office[1]`."""
    out = ""
    for part in path:
        if isinstance(part, str) and re.fullmatch(r"[A-Za-z0-9_-]+", part):
            out += f".{part}" if out else part
        else:
            out += f'["{part}"]' if isinstance(part, str) else f"[{part}]"
    return out


@dataclass
class Origin:
    """Where a config came from: file name, raw text, line of every value."""

    file: str | None = None
    text: str = ""
    lines: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)  # key line, value line
    env: dict[KeyPath, tuple[str, str]] = field(default_factory=dict)  # raw text, value

    def line(self, path: Sequence[str | int], *, key: bool = False) -> int | None:
        """Line of `path` (its key's line if `key`), else of its nearest ancestor."""
        for i in range(len(path), -1, -1):
            hit = self.lines.get(tuple(path[:i]))
            if hit:
                return hit[0] if key else hit[1]
        return None

    def redact(self, message: str, path: Sequence[str | int]) -> str:
        """Replace env-substituted values under `path` by their `${VAR}` text."""
        path = tuple(path)
        for p, (raw, value) in self.env.items():
            if p[: len(path)] == path and value:
                message = message.replace(repr(value)[1:-1], raw).replace(value, raw)
        return message

    def restore_env(self, data: Any) -> Any:
        """Put the `${VAR}` text back into dumped `data` (in place) where it was."""
        for path, (raw, _) in self.env.items():
            node: Any = data
            for part in path[:-1]:
                node = node.get(part) if isinstance(node, dict) else None
            if isinstance(node, dict) and path[-1] in node:
                node[path[-1]] = raw
            elif isinstance(node, list) and isinstance(path[-1], int) and path[-1] < len(node):
                node[path[-1]] = raw
        return data


# ---------------------------------------------------------------- reading


def _expand(node: ScalarNode, env: Mapping[str, str], fail: Callable[[str], NoReturn]) -> bool:
    """Substitute `${...}` in a string scalar in place; True if a variable was used."""
    used = False

    def repl(m: re.Match[str]) -> str:
        nonlocal used
        if m.group(1):
            return "${"
        if m.group(4):
            fail("'${' must start ${NAME} or ${NAME:-default}; write '$${' for a literal '${'")
        name, default = m.group(2), m.group(3)
        value = env.get(name)
        used = True
        if default is not None and not value:
            return default
        if value is None:
            fail(f"${{{name}}} is not set; export {name} or write ${{{name}:-default}}")
        return value

    node.value = _ENV_RE.sub(repl, node.value)
    return used


def _substitute(
    node: Node,
    path: KeyPath,
    env: Mapping[str, str],
    raws: dict[int, tuple[str, str]],
    file: str | None,
    seen: set[int],
) -> None:
    """Expand env references in every string value; reject duplicate keys."""
    if id(node) in seen:
        return
    seen.add(id(node))

    def fail(message: str, at: Node = node, where: KeyPath = path) -> NoReturn:
        line = at.start_mark.line + 1
        raise ConfigError(message, file=file, line=line, field=field_str(where) or None)

    if isinstance(node, ScalarNode):
        if node.tag == _STR_TAG and "${" in node.value:
            raw = node.value
            if _expand(node, env, fail):
                raws[id(node)] = (raw, node.value)
    elif isinstance(node, SequenceNode):
        for i, item in enumerate(node.value):
            _substitute(item, (*path, i), env, raws, file, seen)
    elif isinstance(node, MappingNode):
        keys: set[str] = set()
        for k, v in node.value:
            if isinstance(k, ScalarNode) and k.tag == _MERGE_TAG:
                _substitute(v, path, env, raws, file, seen)
                continue
            if isinstance(k, ScalarNode):
                if k.value in keys:
                    fail(f"duplicate key {k.value!r}", k, (*path, k.value))
                keys.add(k.value)
            _substitute(v, (*path, getattr(k, "value", "?")), env, raws, file, seen)


def _index(
    loader: yaml.SafeLoader,
    node: Node,
    path: KeyPath,
    key_line: int,
    origin: Origin,
    raws: dict[int, tuple[str, str]],
    stack: frozenset[int] = frozenset(),
) -> None:
    """Record the line of every value (after merge keys were flattened)."""
    origin.lines[path] = (key_line, node.start_mark.line + 1)
    if id(node) in raws:
        origin.env[path] = raws[id(node)]
    if id(node) in stack:  # a recursive alias
        return
    stack = stack | {id(node)}
    if isinstance(node, SequenceNode):
        for i, item in enumerate(node.value):
            _index(loader, item, (*path, i), item.start_mark.line + 1, origin, raws, stack)
    elif isinstance(node, MappingNode):  # merged keys come first: the last one wins
        last = {
            loader.construct_object(k): (k, v) for k, v in node.value if isinstance(k, ScalarNode)
        }
        for key, (k, v) in last.items():
            _index(loader, v, (*path, key), k.start_mark.line + 1, origin, raws, stack)


def read_yaml(text: str, *, file: str | None, env: Mapping[str, str]) -> tuple[Any, Origin]:
    """Parse YAML text with env substitution; return (data, origin)."""
    origin = Origin(file=file, text=text)
    raws: dict[int, tuple[str, str]] = {}
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        data: Any = None
        if root is not None:
            _substitute(root, (), env, raws, file, set())
            data = loader.construct_document(root)
            _index(loader, root, (), root.start_mark.line + 1, origin, raws)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or exc.context or "not valid YAML"
        raise ConfigError(f"invalid YAML: {problem}", file=file, line=line) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", file=file) from None
    finally:
        loader.dispose()
    return data, origin


# ----------------------------------------------------- validation errors


def _unwrap(tp: Any) -> Any:
    while True:
        if get_origin(tp) is Annotated:
            tp = get_args(tp)[0]
        elif get_origin(tp) in (Union, types.UnionType):
            rest = [a for a in get_args(tp) if a is not type(None)]
            if len(rest) != 1:
                return tp
            tp = rest[0]
        else:
            return tp


def _walk_loc(root: type[BaseModel], loc: Sequence[str | int]) -> tuple[KeyPath, Any, bool]:
    """Pydantic loc -> (YAML path, type that holds the last part, is a dict key)."""
    tp: Any = root
    parent: Any = None
    path: list[str | int] = []
    is_key = False
    for part in loc:
        if part == "[key]":
            is_key = True
            continue
        tp = _unwrap(tp)
        if get_origin(tp) in (Union, types.UnionType):  # discriminated: skip the tag
            tags = {get_args(m.model_fields["type"].annotation)[0]: m for m in get_args(tp)}
            if part in tags:
                tp = tags[part]
                continue
        parent = tp
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            info = tp.model_fields.get(str(part))
            tp = info.annotation if info else None
        elif get_origin(tp) in (dict, list):
            tp = get_args(tp)[-1]
        else:
            tp = None
        path.append(part)
    return tuple(path), parent, is_key


_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<"}


def _show(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, int | float | str):
        return repr(value)
    return "a mapping" if isinstance(value, dict) else "a list"


def _message(err: Any, raw: str | None) -> str:
    """Pydantic's message, shortened; ends with the offending value (or `${VAR}`)."""
    kind, msg, ctx = err["type"], err["msg"], err.get("ctx") or {}
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    if kind in _BOUNDS:
        text = f"must be {_BOUNDS[kind]} {next(iter(ctx.values()))}"
    elif kind == "too_short":
        return "must not be empty" if ctx.get("min_length") == 1 else msg
    else:  # "Input should be a valid integer, unable to parse ..." -> "expected a valid integer"
        text = re.sub(r",.*| or (instance|object) .*", "", msg)
        text = text.replace("Input should be", "expected", 1)
    return f"{text}, got {raw if raw is not None else _show(err['input'])}"


def _problem(err: Any, origin: Origin, root: type[BaseModel]) -> ConfigError:
    """One pydantic error -> a ConfigError at the right line."""
    path, parent, is_key = _walk_loc(root, err["loc"])
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind == "missing":
        line, message = origin.line(path[:-1], key=True), "field required"
    elif kind == "extra_forbidden":
        line, message = origin.line(path, key=True), "unknown key"
        names = list(parent.model_fields) if isinstance(parent, type) else []
        close = difflib.get_close_matches(str(path[-1]), names, n=1)
        message += (
            f"; did you mean {close[0]!r}?" if close else f"; expected one of: {', '.join(names)}"
        )
    elif kind == "union_tag_invalid":
        path = (*path, "type")
        line = origin.line(path)
        message = f"unknown type {ctx['tag']!r}; expected one of {ctx['expected_tags']}"
    elif kind == "union_tag_not_found":
        line, path, message = origin.line(path, key=True), (*path, "type"), "field required"
    else:
        raw = None if is_key else origin.env.get(path, (None,))[0]
        line, message = origin.line(path, key=is_key), _message(err, raw)
    message = origin.redact(message, path)
    return ConfigError(message, file=origin.file, line=line, field=field_str(path) or None)


def validation_error(exc: ValidationError, origin: Origin, root: type[BaseModel]) -> ConfigError:
    """The first problem (by line) as a ConfigError; all of them in `.errors`."""
    problems = sorted(
        (_problem(e, origin, root) for e in exc.errors(include_url=False)),
        key=lambda p: (p.line is None, p.line or 0),
    )
    problems[0].errors = problems
    return problems[0]
