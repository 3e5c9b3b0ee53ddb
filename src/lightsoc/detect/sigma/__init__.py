"""Sigma detection rules: pySigma parses, lightsoc compiles to polars expressions."""

from lightsoc.detect.sigma.compiler import (
    LEVEL_SCORES,
    CompiledRule,
    LoadResult,
    RuleError,
    compile_rule,
    load_path,
    load_text,
)

__all__ = [
    "LEVEL_SCORES",
    "CompiledRule",
    "LoadResult",
    "RuleError",
    "compile_rule",
    "load_path",
    "load_text",
]
