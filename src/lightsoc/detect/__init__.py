"""Detection in the stream: Sigma rules (and simple DB rules) compiled to polars expressions.

`RuleSet.load(["builtin", "./rules"])` compiles rules; a pipeline `Processor`
given `detectors=[ruleset]` flags every batch after enrichment.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Evaluation", "RuleSet", "builtin_dir"]


def __getattr__(name: str) -> Any:  # noqa: ANN401
    # Lazy: importing `lightsoc.detect.ml` (the CLI does at every start) must not
    # import pySigma (~0.3 s) with the rule set.
    if name in __all__:
        from lightsoc.detect import ruleset

        return getattr(ruleset, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
