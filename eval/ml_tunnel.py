"""`make eval` section ml_tunnel: DNS tunnelling captures against normal DNS (see eval/ml_dga)."""

from eval.ml_dga import report_tunnel as report
from eval.ml_dga import run_tunnel as run

__all__ = ["report", "run"]
