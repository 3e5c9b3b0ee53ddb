"""Template hygiene the pages depend on."""

from __future__ import annotations

import re

from lightsoc.web.context import TEMPLATE_DIR


def test_macro_imports_carry_the_context() -> None:
    # Imported macros see no template context unless imported "with context": `_`
    # (the translator) is undefined inside them and the page fails with a 500 the
    # day a pager first shows up.
    bad = [
        f"{p.name}: {m.group(0)}"
        for p in TEMPLATE_DIR.rglob("*.html")
        for m in re.finditer(r"{%-?\s*(from|import)\s[^%]*%}", p.read_text(encoding="utf-8"))
        if "with context" not in m.group(0)
    ]
    assert bad == []
