"""Detection in the stream: Sigma rules (and simple DB rules) compiled to polars expressions.

`RuleSet.load(["builtin", "./rules"])` compiles rules; a pipeline `Processor`
given `detectors=[ruleset]` flags every batch after enrichment.
"""

from lightsoc.detect.ruleset import Evaluation, RuleSet, builtin_dir

__all__ = ["Evaluation", "RuleSet", "builtin_dir"]
