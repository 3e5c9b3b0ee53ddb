"""Every registered component is tested and documented (Datasette's habit)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lightsoc import registry
from lightsoc.parsers.base import Parser

ROOT = Path(__file__).resolve().parents[1]
TEST_DIRS = {"parsers": "parsers", "enrichers": "enrich", "sources": "sources", "outputs": "alerts"}


def _tests_text(kind: str) -> str:
    folder = ROOT / "tests" / TEST_DIRS[kind]
    return "\n".join(p.read_text() for p in folder.rglob("test_*.py"))


@pytest.mark.parametrize("kind", sorted(TEST_DIRS))
def test_every_component_has_a_test_that_names_it(kind):
    text = _tests_text(kind)
    untested = [n for n in registry.names(kind) if n != "auto" and f'"{n}"' not in text]
    assert untested == [], f"{kind} without a test naming them: {untested}"


def test_every_parser_is_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    missing = [n for n in registry.names("parsers") if f"`{n}`" not in readme]
    assert missing == []


def test_parsers_follow_the_contract():
    for name, cls in registry.all_of("parsers").items():
        assert issubclass(cls, Parser), name
        assert cls.__doc__, f"parser {name} has no docstring"


def test_duplicate_registration_is_refused():
    class A:
        pass

    class B:
        pass

    registry.register("outputs", "_test_dup")(A)
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("outputs", "_test_dup")(B)


def test_unknown_name_lists_known_ones():
    with pytest.raises(KeyError, match="nginx_combined"):
        registry.get("parsers", "nginx_combine")
