"""`make eval`: lightsoc's detection quality on public data (see eval/run.py)."""
