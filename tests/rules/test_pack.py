"""The built-in rule pack as a whole: metadata, packaging and test coverage."""

from __future__ import annotations

import tomllib
import uuid
from pathlib import Path

import yaml

from lightsoc.detect.correlation import load_correlations
from lightsoc.detect.ruleset import BUILTIN_DIRS, RuleSet
from tests.rules.helpers import RULES

ROOT = Path(__file__).resolve().parents[2]
REQUIRED = ("title", "id", "status", "description", "author", "date", "level")


def _documents() -> list[tuple[Path, dict]]:
    assert RULES is not None
    return [
        (path, doc)
        for path in sorted(RULES.rglob("*.yml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def test_every_rule_has_its_metadata_and_a_unique_id() -> None:
    docs = _documents()
    assert len(docs) >= 60
    for path, doc in docs:
        missing = [k for k in REQUIRED if not doc.get(k)]
        assert not missing, f"{path.name}: {doc.get('title')}: missing {missing}"
        uuid.UUID(doc["id"])
    ids = [d["id"] for _, d in docs]
    assert len(ids) == len(set(ids))
    names = [d["name"] for _, d in docs if "name" in d]
    assert len(names) == len(set(names))


def test_the_whole_pack_loads() -> None:
    stream = RuleSet.load(["builtin"])
    corr = load_correlations([RULES])
    assert not corr.failures, corr.failures
    assert len(stream) >= 30 and len(corr.rules) >= 20


def test_the_pack_ships_in_the_wheel() -> None:
    # `rules/` is linked into the package and every rule file matches the package-data glob
    link = ROOT / "src" / "lightsoc" / "rules"
    assert link.resolve() == (ROOT / "rules").resolve()
    # an installed package finds the pack beside its modules (lightsoc/rules)
    assert BUILTIN_DIRS[1] == link and BUILTIN_DIRS[1].is_dir()
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = [p for p in globs["package-data"]["lightsoc"] if p.startswith("rules/")]
    for path in (ROOT / "rules").rglob("*"):
        if path.is_file():
            rel = "rules/" + path.relative_to(ROOT / "rules").as_posix()
            assert any(Path(rel).match(p) for p in patterns), f"{rel} would not be packaged"


def test_every_rule_is_exercised_by_a_test() -> None:
    """Tests name each rule (or a correlation that counts it) by its title, name or id."""
    tests = "\n".join(p.read_text() for p in Path(__file__).parent.glob("test_*.py"))
    tests += (ROOT / "tests" / "detect" / "test_correlation.py").read_text()
    docs = [d for _, d in _documents()]
    users: dict[str, list[dict]] = {}  # a counting rule's name -> the correlations using it
    for d in docs:
        for ref in (d.get("correlation") or {}).get("rules", []):
            users.setdefault(ref, []).append(d)

    def named(d: dict) -> bool:
        return any(str(d[k]) in tests for k in ("title", "name", "id") if d.get(k))

    untested = [
        d["title"]
        for d in docs
        if not named(d) and not any(named(u) for u in users.get(d.get("name", ""), []))
    ]
    assert not untested, untested
