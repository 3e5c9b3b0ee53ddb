"""Training data of the web request classifier: CSIC 2010, HttpParamsDataset, access logs.

CSIC 2010 holds raw HTTP/1.1 requests (request line, headers, blank line,
then the body of a POST/PUT). A request becomes the target an access log
shows, in origin form (path and query; CSIC wrote the absolute form a proxy
sees), with a POST/PUT body appended to the query string, as WAF/IDS
evaluations of CSIC usually feed it: many CSIC attacks are in the body only.

CSIC's normal *test* file is not in the shared data, so `csic_split` makes a
seeded, stratified split of the normal training file and the anomalous file.
"""

from __future__ import annotations

import csv
import gzip
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, quote_plus

import numpy as np

#: ../shared/data/web next to the repository checkout (the public data sets)
SHARED_WEB = Path(__file__).resolve().parents[5] / "shared" / "data" / "web"
CSIC_NORMAL = "normalTrafficTraining.txt.gz"
CSIC_ANOMALOUS = "anomalousTrafficTest.txt.gz"
HTTPPARAMS = "httpparams_payload_full.csv"
SPLIT_SEED = 20101129
TEST_FRACTION = 0.3

_REQUEST = re.compile(r"^(GET|POST|PUT|HEAD|DELETE|OPTIONS|TRACE|PATCH) (\S+) (HTTP/\d\.\d)$")
_ABSOLUTE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/]*")
#: the request of an Apache/nginx combined-log line: "METHOD TARGET HTTP/x"
_LOG_REQUEST = re.compile(r'"[A-Z]+ (\S+)(?: HTTP/[0-9.]+)?"')


@dataclass
class Request:
    """One raw HTTP request of CSIC."""

    method: str
    target: str
    version: str
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""


def read_requests(path: Path) -> Iterator[Request]:
    """The requests of a CSIC file (gzip or plain), in file order."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="latin-1", newline="") as fh:
        lines = fh.read().replace("\r\n", "\n").split("\n")
    cur: Request | None = None
    in_body = False
    body: list[str] = []
    for line in lines:
        m = _REQUEST.match(line)
        if m:
            if cur is not None:
                cur.body = "".join(body)
                yield cur
            cur, in_body, body = Request(m.group(1), m.group(2), m.group(3)), False, []
        elif cur is None:
            continue
        elif not in_body:
            if line == "":
                in_body = True
            elif ":" in line:
                k, v = line.split(":", 1)
                cur.headers[k.strip().lower()] = v.strip()
        elif line:
            body.append(line)
    if cur is not None:
        cur.body = "".join(body)
        yield cur


def origin_form(target: str) -> str:
    """`http://host:port/p?q` -> `/p?q` (what a browser sends to the server itself)."""
    rest = _ABSOLUTE.sub("", target)
    return rest if rest.startswith("/") else "/" + rest


def request_target(req: Request, with_body: bool = True) -> str:
    """The origin-form target of `req`; a body is appended to the query string."""
    target = origin_form(req.target)
    if with_body and req.body:
        target += ("&" if "?" in target else "?") + req.body
    return target


def csic_targets(path: Path, with_body: bool = True) -> list[str]:
    """Every request target of one CSIC file."""
    return [request_target(r, with_body) for r in read_requests(path)]


@dataclass
class Split:
    """A labelled train/test split (label 1 = anomalous)."""

    train: list[str]
    y_train: np.ndarray
    test: list[str]
    y_test: np.ndarray
    description: dict[str, object]


def _cut(n: int, rng: np.random.Generator, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    order = rng.permutation(n)
    k = round(n * test_fraction)
    return np.sort(order[k:]), np.sort(order[:k])


def csic_split_requests(
    web_dir: Path = SHARED_WEB, seed: int = SPLIT_SEED, test_fraction: float = TEST_FRACTION
) -> tuple[list[tuple[Request, int]], list[tuple[Request, int]]]:
    """(train, test) lists of (request, label 1 = anomalous): each file cut at random,
    `1 - test_fraction` to train, the rest to test (the split every model and the rules
    are evaluated on)."""
    normal = list(read_requests(web_dir / CSIC_NORMAL))
    anomalous = list(read_requests(web_dir / CSIC_ANOMALOUS))
    rng = np.random.default_rng(seed)
    n_tr, n_te = _cut(len(normal), rng, test_fraction)
    a_tr, a_te = _cut(len(anomalous), rng, test_fraction)
    train = [(normal[i], 0) for i in n_tr] + [(anomalous[i], 1) for i in a_tr]
    test = [(normal[i], 0) for i in n_te] + [(anomalous[i], 1) for i in a_te]
    return train, test


def csic_split(
    web_dir: Path = SHARED_WEB,
    seed: int = SPLIT_SEED,
    test_fraction: float = TEST_FRACTION,
    with_body: bool = True,
) -> Split:
    """The targets of `csic_split_requests` (POST/PUT bodies in the query by default)."""
    train_r, test_r = csic_split_requests(web_dir, seed, test_fraction)
    train = [request_target(r, with_body) for r, _ in train_r]
    test = [request_target(r, with_body) for r, _ in test_r]
    y_train = np.asarray([y for _, y in train_r], np.int8)
    y_test = np.asarray([y for _, y in test_r], np.int8)
    desc = {
        "data": f"CSIC 2010 ({CSIC_NORMAL} + {CSIC_ANOMALOUS})",
        "split": (
            f"stratified per file, seed {seed}: {1 - test_fraction:.0%} train / "
            f"{test_fraction:.0%} test"
        ),
        "targets": "origin-form path?query, POST/PUT body appended to the query"
        if with_body
        else "origin-form path?query (no bodies)",
        "train": {"normal": int((y_train == 0).sum()), "anomalous": int(y_train.sum())},
        "test": {"normal": int((y_test == 0).sum()), "anomalous": int(y_test.sum())},
    }
    return Split(train, y_train, test, y_test, desc)


def httpparams(path: Path | None = None) -> tuple[list[str], np.ndarray]:
    """HttpParamsDataset parameter values as query strings `?p=VALUE` (label 1 = attack)."""
    path = path or SHARED_WEB / HTTPPARAMS
    values: list[str] = []
    labels: list[int] = []
    with path.open(encoding="utf-8", errors="replace", newline="") as fh:
        for row in csv.DictReader(fh):
            values.append("?p=" + (row.get("payload") or ""))
            labels.append(0 if row.get("label") == "norm" else 1)
    return values, np.asarray(labels, np.int8)


def access_log_targets(lines: list[str]) -> list[str | None]:
    """The request target of each combined-log line (None where there is no request)."""
    out: list[str | None] = []
    for line in lines:
        m = _LOG_REQUEST.search(line)
        out.append(m.group(1) if m else None)
    return out


# -- synthetic generic traffic ----------------------------------------------------------
# CSIC's normal class is one shop (/tienda1/...): trained on it alone, a model learns
# "not this shop" = anomalous and flags every request of any other site. Random
# targets of many shapes, built from the words of the (benign) training data, teach
# it that a path of words is not an attack; the same targets carrying attack payloads
# keep the payload the only difference between the classes.
_EXT = (
    *("",) * 4,
    *(".html", ".php", ".png", ".jpg", ".css", ".js", ".gif", ".pdf", ".txt", ".xml"),
    *(".ico", ".svg", ".jsp", ".aspx", ".json", ".gz", ".tar.gz", ".rb", ".py", ".zip"),
)
_PUNCT = (":", "(", ")", ",", ".", "-", "!", "'", "/", "|")
#: everyday words of site paths, so a path word a payload also uses ("scripts" and
#: <script>, "select" and SELECT) is seen in benign targets too
COMMON_WORDS = tuple(
    """
    about account api app archive articles assets author blog books cart catalog category
    comments contact content css data docs download downloads en events faq feed files
    fonts forum gallery help home images img include includes index js lib login logout
    media misc news page pages people post posts presentations products profile projects
    public resources rss scripts search select services shop sitemap static store style
    styles support tags themes tools topics update updates uploads user users video
    videos view wiki year
    """.split()
)
#: tracking parameters of links in feeds, mails and ads
_TRACKING = ("utm_source", "utm_medium", "utm_campaign", "utm_content", "fbclid", "gclid")


def vocabulary(texts: list[str]) -> list[str]:
    """The distinct alphanumeric words (2..16 chars) of `texts` and `COMMON_WORDS`, sorted."""
    words: set[str] = set(COMMON_WORDS)
    for t in texts:
        words.update(w for w in re.split(r"[^A-Za-z0-9]+", t) if 2 <= len(w) <= 16)
    return sorted(words)


def _segment(r: random.Random, words: list[str]) -> str:
    k = r.random()
    if k < 0.25:
        return r.choice(COMMON_WORDS)
    if k < 0.55:
        return r.choice(words)
    if k < 0.75:
        return r.choice(words) + r.choice("-_.") + r.choice(words)
    if k < 0.85:
        return str(r.randint(0, 3000))
    if k < 0.92:  # dated paths: /blog/2013/Aug/11
        return f"{r.randint(1995, 2030)}/{r.choice(words)[:3].capitalize()}/{r.randint(1, 31)}"
    return r.choice(words).capitalize()


def _value(r: random.Random, words: list[str]) -> str:
    k = r.random()
    if k < 0.35:
        return r.choice(words)
    if k < 0.6:
        return str(r.randint(0, 100000))
    if k < 0.85:
        return "+".join(r.choice(words) for _ in range(r.randint(2, 5)))
    # free text (search boxes, feed titles of tracking parameters) with punctuation
    parts = [r.choice(words) + (r.choice(_PUNCT) if r.random() < 0.3 else "") for _ in range(4)]
    return quote_plus(" ".join(parts)) if r.random() < 0.5 else "+".join(parts)


def synthetic_target(r: random.Random, words: list[str], payload: str | None = None) -> str:
    """A random target of words; `payload` (if given) is the value of one parameter."""
    if payload is None and r.random() < 0.02:
        return "/"  # the home page: the most frequent request of every site
    path = "/" + "/".join(_segment(r, words) for _ in range(r.randint(1, 5)))
    k = r.random()
    if k < 0.5:
        path += r.choice(_EXT)
    elif k < 0.7:
        path += "/"
    if payload is None and r.random() < 0.03:  # Apache directory-listing sort links
        return path.rstrip("/") + "/?C=" + r.choice("NMSD") + ";O=" + r.choice("AD")
    if payload is not None or r.random() < 0.35:
        n = r.randint(1, 3)
        params = [f"{r.choice(words)}={_value(r, words)}" for _ in range(n)]
        if r.random() < 0.1:
            params += [f"{k}={_value(r, words)}" for k in r.sample(_TRACKING, r.randint(1, 3))]
        if payload is not None:
            k = r.random()
            enc = payload if k < 0.3 else quote_plus(payload) if k < 0.6 else quote(payload)
            params.insert(r.randrange(n + 1), f"{r.choice(words)}={enc}")
        path += "?" + "&".join(params)
    return path


def synthetic(
    words: list[str], payloads: list[str], n_benign: int, n_attack: int, seed: int = 7
) -> tuple[list[str], np.ndarray]:
    """`n_benign` random benign targets and `n_attack` carrying one of `payloads` each."""
    r = random.Random(seed)
    benign = [synthetic_target(r, words) for _ in range(n_benign)]
    attack = (
        [synthetic_target(r, words, r.choice(payloads)) for _ in range(n_attack)]
        if payloads
        else []
    )
    y = np.r_[np.zeros(len(benign), np.int8), np.ones(len(attack), np.int8)]
    return benign + attack, y


# -- rule-labelled events of a data directory --------------------------------------------
#: rules that judge the user agent, not the target: their label would be noise for a
#: model that sees only the target (a sqlmap request for "/" is not an attack target)
_UA_ONLY = ("user_agent",)
STORE_FIELDS = ["url.original", "url.path", "url.query", "rule.name"]
MAX_STORE_EVENTS = 5_000_000


def web_rule_names() -> set[str]:
    """Titles and names of the built-in pack's web rules (rules/web/*.yml)."""
    import yaml

    from lightsoc.detect.ruleset import builtin_dir

    base = builtin_dir()
    out: set[str] = set()
    for p in sorted((base / "web").glob("*.yml")) if base is not None else []:
        for doc in yaml.safe_load_all(p.read_text(encoding="utf-8")):
            if not isinstance(doc, dict) or any(u in str(doc.get("name")) for u in _UA_ONLY):
                continue
            out.update(str(doc[k]) for k in ("title", "name") if doc.get(k))
    return out


def rule_labelled(data_dir: Path) -> tuple[list[str], np.ndarray, dict[str, object]]:
    """The web events of `data_dir` as (targets, label = flagged by a web rule, description)."""
    import polars as pl

    from lightsoc.client import ReaderError, open_reader
    from lightsoc.detect.ml.modelfile import ModelError
    from lightsoc.detect.ml.web import event_targets

    try:
        reader = open_reader(data_dir)
    except ReaderError as e:
        raise ModelError(str(e)) from None
    try:
        rows = reader.search("event.category:web", "all", MAX_STORE_EVENTS, STORE_FIELDS)
    except ReaderError as e:
        raise ModelError(f"{data_dir}: cannot read web events ({e})") from None
    finally:
        reader.close()
    df = pl.DataFrame(
        {f: [r.get(f) for r in rows] for f in STORE_FIELDS[:3]},
        schema=dict.fromkeys(STORE_FIELDS[:3], pl.String),
    )
    names = web_rule_names()
    y = np.asarray([bool(names.intersection(r.get("rule.name") or ())) for r in rows], np.int8)
    targets = event_targets(df)
    keep = targets.is_not_null().to_numpy()
    desc = {
        "data": f"web events of {data_dir} (event.category:web)",
        "label": "flagged by a built-in web rule (rules/web/*.yml, user-agent rules excluded)",
        "events": len(rows),
    }
    return [t for t in targets.filter(keep).to_list()], y[keep], desc
