"""`make eval`: a quality report of lightsoc's detection on public data.

Sections (each runs the real pipeline with the built-in rule pack as it is on
disk now): web (CSIC 2010 and real benign access logs), auth (fail2ban's
failJSON annotations), zeek (Zeek's SSH/FTP brute-force traces as flows),
scans (a SYN scan capture and Stratosphere's port-scan data); and the
machine-learning models: ml_web (CSIC 2010: rules vs KNN vs the shipped
classifier), ml_dga (unseen DGA families), ml_tunnel (tunnelling captures vs
normal DNS), ml_lda (Spot-style suspicious connects with injected anomalies),
ml_beacon (RITA-style beaconing). Prints a table
per section; `--json PATH` writes every figure. Always exits 0: it is a
report, a missed target is printed as MISSED.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python eval/run.py`

from eval import auth, flows, web  # noqa: E402

#: sections that are a module eval/<name>.py with run() -> dict and report(dict) -> str
MODULE_SECTIONS = ("ml_web", "ml_dga", "ml_tunnel", "ml_lda", "ml_beacon")
SECTIONS = ("web", "auth", "zeek", "scans", *MODULE_SECTIONS)


def run_section(name: str) -> tuple[dict[str, Any], str]:
    """Figures and text of one section."""
    if name == "web":
        res = web.run()
        return res, web.report(res)
    if name in MODULE_SECTIONS:
        mod = importlib.import_module(f"eval.{name}")
        res = mod.run()
        return res, mod.report(res)
    if name == "auth":
        res = auth.run()
        return res, auth.report(res)
    if name == "zeek":
        res = flows.run_zeek()
        return res, flows.report(res, "Zeek brute-force traces (softflowd -> nfcapd -> nfdump)")
    res = flows.run_scans()
    return res, flows.report(res, "Port scans")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=SECTIONS, action="append", help="run only this section")
    ap.add_argument("--json", type=Path, help="write all figures to this file")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # the report is the output, not the pipeline log
    results: dict[str, Any] = {}
    t_all = time.perf_counter()
    for name in args.only or SECTIONS:
        t0 = time.perf_counter()
        try:
            res, text = run_section(name)
        except Exception as exc:  # one broken section must not hide the others' figures
            res, text = (
                {"error": f"{type(exc).__name__}: {exc}"},
                f"ERROR {type(exc).__name__}: {exc}",
            )
        res["seconds"] = round(time.perf_counter() - t0, 1)
        results[name] = res
        print(f"== {name} ({res['seconds']} s) ".ljust(100, "="))
        print(text)
        print(flush=True)
    results["seconds"] = round(time.perf_counter() - t_all, 1)
    print(f"total {results['seconds']} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
