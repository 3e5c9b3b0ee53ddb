"""`lightsoc ml`: train, evaluate, list and score the machine-learning models.

    lightsoc ml list [--json]
    lightsoc ml train KIND [--input PATH...] [--from-store] [--name NAME] [--json]
    lightsoc ml eval KIND [--input PATH...] [--json]
    lightsoc ml score KIND FILE|- [--name NAME]

`ml score web FILE` reads one request target (path and query) per line and
`ml score dga FILE` one domain name per line; each prints
``{"value": ..., "score": ...}`` per input line, in input order, a higher
score meaning more malicious. A kind is a module of `lightsoc.detect.ml`
implementing the functions named in `KINDS`' docstring.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from lightsoc.detect.ml import KINDS

NAME = "ml"
HELP = "machine-learning models: train, eval, score, list"
ACTIONS = ("list", "train", "eval", "score")

# A kind module (lightsoc.detect.ml.KINDS) defines
#   DESCRIPTION: str
#   train(inputs: list[Path], data_dir: Path | None, from_store: bool) -> ModelFile
#   evaluate(inputs: list[Path], data_dir: Path | None) -> dict  (figures, JSON-able)
#   load(data_dir: Path | None, name: str | None = None) -> object with
#       score(values: list[str]) -> numpy float array (higher = more malicious)
# and may leave out what does not apply (a missing function is a usage error).
SCORE_CHUNK = 65536


def add_arguments(parser: argparse.ArgumentParser, common: Callable[..., None]) -> None:
    parser.add_argument("action", choices=ACTIONS)
    parser.add_argument("kind", nargs="?", help=f"model kind: {', '.join(KINDS)}")
    parser.add_argument("file", nargs="?", help="score: input file, one value per line (- = stdin)")
    parser.add_argument("--input", action="append", type=Path, default=[], help="training data")
    parser.add_argument(
        "--from-store", action="store_true", help="train on (rule-labelled) stored events"
    )
    parser.add_argument("--name", default=None, help="model name (default: the kind)")
    parser.add_argument(
        "--model",
        default=None,
        help="train: the model type where a kind has several (web: linear, knn)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    common(parser)


def _module(kind: str | None) -> ModuleType:
    from lightsoc.cli import UsageError

    if not kind:
        raise UsageError(f"name a model kind: {', '.join(KINDS)}")
    if kind not in KINDS:
        raise UsageError(f"unknown model kind {kind!r} (known: {', '.join(KINDS)})")
    return importlib.import_module(KINDS[kind])


def _fn(mod: ModuleType, name: str, kind: str, action: str) -> Callable[..., Any]:
    from lightsoc.cli import UsageError

    fn = getattr(mod, name, None)
    if fn is None:
        raise UsageError(f"`lightsoc ml {action}` does not apply to {kind!r}")
    return fn


def _data_dir(args: argparse.Namespace) -> Path:
    from lightsoc.cli import _config

    return _config(args).data_dir


def _lines(path: str) -> list[str]:
    if path == "-":
        return [line.rstrip("\r\n") for line in sys.stdin]
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
        return [line.rstrip("\r\n") for line in f]


def run(args: argparse.Namespace) -> int:
    import orjson

    from lightsoc.cli import UsageError, _config
    from lightsoc.detect.ml import modelfile

    data_dir = _data_dir(args)
    if args.action == "list":
        rows = modelfile.listing(data_dir)
        if args.json:
            sys.stdout.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n")
        else:
            for r in rows:
                metrics = r.get("metrics") or {}
                brief = ", ".join(f"{k}={v}" for k, v in list(metrics.items())[:4])
                mark = "*" if r["active"] else " "
                print(f"{mark} {r['name']:<12} {r['origin']:<8} {r.get('created', '?')}  {brief}")
        return 0
    mod = _module(args.kind)
    if args.action == "train":
        from lightsoc.detect.ml.modelfile import models_dir, save

        train = _fn(mod, "train", args.kind, "train")
        extra = {}
        if args.model is not None:
            if "model" not in inspect.signature(train).parameters:
                raise UsageError(f"--model does not apply to {args.kind!r}")
            extra["model"] = args.model
        model = train(args.input, data_dir, args.from_store, **extra)
        path = save(models_dir(data_dir) / (args.name or args.kind), model)
        out = {"model": str(path), "metrics": model.meta.get("metrics", {})}
        config = _config(args)
        if config.store.state != "sqlite":  # a shared state store: processors install it
            from lightsoc.store.state import StateStore
            from lightsoc.store.state_models import SharedModels

            state = StateStore.for_data_dir(data_dir, config.store.state)
            try:
                out["shared_version"] = SharedModels(state).publish(path.name, path)
            finally:
                state.close()
        print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
        return 0
    if args.action == "eval":
        figures = _fn(mod, "evaluate", args.kind, "eval")(args.input, data_dir)
        print(orjson.dumps(figures, option=orjson.OPT_INDENT_2).decode())
        return 0
    if not args.file:
        raise UsageError("ml score KIND FILE: name the input file (- for standard input)")
    load = _fn(mod, "load", args.kind, "score")
    try:
        values = _lines(args.file)
    except OSError as e:
        raise UsageError(f"{args.file}: {e.strerror or e}") from None
    scorer = load(data_dir, args.name)
    write = sys.stdout.write
    for i in range(0, len(values), SCORE_CHUNK):
        chunk = values[i : i + SCORE_CHUNK]
        scores = scorer.score(chunk)
        for v, s in zip(chunk, scores, strict=True):
            score = None if s != s else round(float(s), 6)  # NaN: no score for this input
            # undecodable input bytes (read with surrogateescape) are shown as U+FFFD
            shown = v.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            write(orjson.dumps({"value": shown, "score": score}).decode() + "\n")
    return 0
