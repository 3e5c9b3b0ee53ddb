"""Vectorised features of DNS names for the DGA model.

A DGA registers domains, so what it generates is the *registered label*: the
label left of the public suffix (`xjwqkzpv` in `a.xjwqkzpv.com.br`). Subdomain
labels are not scored: whoever owns a zone (a CDN, a tracker, a tunnel) names
its subdomains freely and random-looking ones are common and benign
(`e1234.dscb.akamaiedge.net`); random subdomains are the tunnelling model's
business. The suffix comes from the PSL's ICANN section only: its private
section (`cloudfront.net`, `akamaiedge.net`, `herokuapp.com`, ...) lists zones
that hand out random labels by design (`d3kbx6ekzl2v0r.cloudfront.net`), which
would be false positives. Free dynamic-DNS zones are the exception: a name
under `mooo.com` or `ddns.net` is a registration in all but name, so
`DDNS_SUFFIXES` count as public suffixes. (The label can therefore differ
from `dns.question.registered_domain` of `enrich.domains`, which keeps the
private section, as ECS expects; that function is per name and ~9 µs each,
too slow for this path anyway.)

Everything works on the flat UTF-8 buffer of the whole column (Arrow
offsets + bytes) with numpy: lower-casing by table, the suffix by a
polynomial hash of every "last k labels" suffix looked up in the hashed PSL
(wildcard and exception rules included), the label's bytes gathered into one
flat array, and per-label figures summed with `np.add.reduceat` and `np.bincount`; the
names are processed in chunks of `CHUNK` so the per-byte arrays stay in cache. The
n-gram side (benign tables, their per-label statistics, the n-gram component's
indices) is `dga_ngrams`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from lightsoc.detect.ml import dga_ngrams as N

# re-exported: `dga` and the tests use them through this module
from lightsoc.detect.ml.dga_ngrams import ALPHABET as ALPHABET
from lightsoc.detect.ml.dga_ngrams import NGRAM_SIZE as NGRAM_SIZE
from lightsoc.detect.ml.dga_ngrams import SEEN_ORDERS as SEEN_ORDERS
from lightsoc.detect.ml.dga_ngrams import SEEN_SIZE as SEEN_SIZE
from lightsoc.detect.ml.dga_ngrams import benign_tables as benign_tables

#: dynamic-DNS zones whose subdomains anyone registers: a name under them is scored on
#: its own first label (FreeDNS/afraid.org, ChangeIP, Dynu are not in the PSL at all;
#: no-ip, DynDNS, DuckDNS are in its private section, which is otherwise not used)
DDNS_SUFFIXES = (
    *("afraid.org", "mooo.com", "yi.org", "dynserv.com", "us.to", "chickenkiller.com"),
    *("strangled.net", "crabdance.com", "twilightparadox.com", "ignorelist.com"),
    *("jumpingcrab.com", "ftp.sh", "changeip.com", "dnsdynamic.com", "dynu.net"),
    *("freedns.org", "publicvm.com", "ddns.net", "hopto.org", "zapto.org", "sytes.net"),
    *("no-ip.org", "no-ip.biz", "no-ip.info", "myftp.org", "myftp.biz", "serveftp.com"),
    *("redirectme.net", "bounceme.net", "myvnc.com", "servehttp.com", "servebeer.com"),
    *("3utilities.com", "servegame.com", "serveblog.net", "dyndns.org", "dyndns.biz"),
    *("dyndns.info", "homeip.net", "dynalias.com", "dnsalias.com", "dnsalias.net"),
    *("dnsalias.org", "duckdns.org", "dynv6.net", "freeddns.org", "ddnsking.com"),
)
MAX_NAME = 253
MAX_LABEL = 63
OTHER = 39  # the code of anything outside a-z, 0-9, '-', '_' (see `dga_ngrams`)
#: suffix classes (one-hot in the model; the order is part of the model format). An
#: unknown TLD (`.bazar`, but also `.lan`, `.internal`) joins "gtld": a class of its own
#: would learn "unknown TLD = DGA" from the one family using one, and flag intranets.
TLD_CLASSES = ("com", "net_org", "cctld", "gtld", "multi", "ddns")
FEATURES = (
    "length",
    "entropy",
    "digit_ratio",
    "vowel_ratio",
    "consonant_ratio",
    "max_consonant_run",
    "max_digit_run",
    "hyphens",
    "unique_ratio",
    "letter_digit_switches",
    "hex",
    *N.COLUMNS,
    *(f"tld_{c}" for c in TLD_CLASSES),
)

_CODES = np.full(256, OTHER, dtype=np.int32)
_CODES[ord("a") : ord("z") + 1] = np.arange(1, 27)
_CODES[ord("0") : ord("9") + 1] = np.arange(27, 37)
_CODES[ord("-")] = 37
_CODES[ord("_")] = 38
_LOWER = np.arange(256, dtype=np.uint8)
_LOWER[ord("A") : ord("Z") + 1] += 32
_IS_VOWEL = np.zeros(ALPHABET, dtype=bool)
_IS_VOWEL[[ord(c) - ord("a") + 1 for c in "aeiou"]] = True
_IS_LETTER = np.zeros(ALPHABET, dtype=bool)
_IS_LETTER[1:27] = True
_IS_DIGIT = np.zeros(ALPHABET, dtype=bool)
_IS_DIGIT[27:37] = True
_IS_HEX = _IS_DIGIT.copy()
_IS_HEX[1:7] = True
_DOT, _COLON = ord("."), ord(":")
_BASE = np.uint64(1099511628211)  # FNV prime: an odd 64-bit multiplier
# B**0, B**1, ... and a final 0: the weight of bytes past a stripped trailing dot (index -1)
_POW = np.r_[np.cumprod(np.r_[np.uint64(1), np.full(MAX_NAME + 8, _BASE)]), np.uint64(0)]


#: character class per code: 0 other ('-', '_', non-ASCII), 1 consonant, 2 vowel, 3 digit
_CLASS = np.where(_IS_DIGIT, 3, np.where(_IS_VOWEL, 2, np.where(_IS_LETTER, 1, 0)))
#: counting category per code: 0 consonant, 1 hex consonant (b-d, f), 2 vowel, 3 hex
#: vowel (a, e), 4 digit, 5 hyphen, 6 anything else
_CAT = np.full(ALPHABET, 6, dtype=np.int64)
_CAT[1:27] = np.where(_IS_VOWEL[1:27], 2, 0) + _IS_HEX[1:27]
_CAT[_IS_DIGIT] = 4
_CAT[37] = 5
_LD = np.array([0, 1, 1, 2])  # class -> 0 other, 1 letter, 2 digit
_LOG2 = np.log2(np.maximum(np.arange(MAX_LABEL + 2), 1))
_INV = 1.0 / np.maximum(np.arange(MAX_LABEL + 2), 1)
CHUNK = 32768  # names per numpy pass: keeps the per-byte arrays in cache

# hash-set flags of a suffix
_MIX = 0x9E3779B97F4A7C15
_RULE, _WILD, _EXC, _PARENT, _DDNS, _NETORG, _COM, _ARPA = 1, 2, 4, 8, 16, 32, 64, 128


def hash_text(text: str) -> int:
    """The suffix hash of `text`, as `_prefix_hashes` gives it in bulk."""
    h, base = 0, int(_BASE)
    for b in text.encode():
        h = (h * base + b + 1) % (1 << 64)
    return h


class SuffixRules:
    """The PSL's ICANN rules plus `DDNS_SUFFIXES` in an open-addressing hash table of
    suffix hashes with flags (rule, wildcard base, exception, parent of a longer rule)."""

    def __init__(self, path: Path | None = None) -> None:
        if path is None:
            import publicsuffixlist

            path = Path(publicsuffixlist.__file__).with_name("public_suffix_list.dat")
        flags: dict[str, int] = {}

        def add(name: str, flag: int) -> None:
            flags[name] = flags.get(name, 0) | flag
            parts = name.split(".")
            for i in range(1, len(parts)):  # every proper suffix leads to a longer rule
                parent = ".".join(parts[i:])
                flags[parent] = flags.get(parent, 0) | _PARENT

        for raw in path.read_text(encoding="utf-8").splitlines():
            line = raw.strip()
            if "BEGIN PRIVATE DOMAINS" in line:
                break  # see the module docstring: the private section is not used
            if not line or line.startswith("//"):
                continue
            rule = line.split()[0].lower()
            if rule.startswith("!"):
                add(rule[1:], _EXC)
            elif rule.startswith("*."):
                add(rule[2:], _WILD)
                flags[rule[2:]] |= _PARENT
            else:
                add(rule, _RULE)
        for d in DDNS_SUFFIXES:
            add(d, _RULE | _DDNS)
        for name, flag in (("net", _NETORG), ("org", _NETORG), ("com", _COM), ("arpa", _ARPA)):
            flags[name] = flags.get(name, 0) | flag
        self.max_labels = max(n.count(".") for n in flags) + 2
        self.bits = max(10, (8 * len(flags)).bit_length())
        size = 1 << self.bits
        self.keys = np.zeros(size, dtype=np.uint64)
        self.flags = np.zeros(size, dtype=np.uint8)
        self.mask = size - 1
        self.probes = 1
        for name, flag in flags.items():
            h = hash_text(name)
            slot = ((h * _MIX) % (1 << 64)) >> (64 - self.bits)
            for p in range(size):
                s = (slot + p) & self.mask
                if self.keys[s] == 0:
                    self.keys[s], self.flags[s] = h, flag
                    self.probes = max(self.probes, p + 1)
                    break

    def lookup(self, hashes: np.ndarray) -> np.ndarray:
        """The flags of each suffix hash (0: not in the table)."""
        # Fibonacci hashing: the top bits of hash * golden ratio spread the slots
        slot = ((hashes * np.uint64(_MIX)) >> np.uint64(64 - self.bits)).astype(np.int64)
        out = np.zeros(hashes.shape, dtype=np.uint8)
        for p in range(self.probes):
            s = (slot + p) & self.mask
            out = np.where(self.keys[s] == hashes, self.flags[s], out)
        return out


_rules: SuffixRules | None = None
_rules_lock = threading.Lock()


def suffix_rules() -> SuffixRules:
    """The bundled PSL, parsed once per process (~40 ms)."""
    global _rules
    with _rules_lock:
        if _rules is None:
            _rules = SuffixRules()
        return _rules


def name_buffers(names: pl.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lower-cased bytes, start, end) of each name with surrounding space stripped;
    a null is empty."""
    arr = names.cast(pl.Utf8).fill_null("").str.strip_chars().to_arrow()
    arr = pc.cast(arr, pa.large_string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    n = len(arr)
    if n == 0:
        return np.zeros(0, np.uint8), np.zeros(0, np.int64), np.zeros(0, np.int64)
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], dtype=np.int64, count=n + 1 + arr.offset)[arr.offset :]
    raw = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    data = _LOWER[raw[offsets[0] : offsets[-1]]]
    offsets = offsets - offsets[0]
    return data, offsets[:-1].copy(), offsets[1:].copy()


def _prefix_hashes(data: np.ndarray, row: np.ndarray, end: np.ndarray) -> np.ndarray:
    """c (len(data) + 1) such that hash_text(name[p:end[r]]) = c[end[r]] - c[p] for a
    byte p of row r: each byte weighs B**(distance to its row's end), bytes past a
    stripped trailing dot weigh 0, and uint64 arithmetic wraps (modulo 2**64)."""
    dist = end[row] - np.arange(data.size)
    dist -= 1
    np.minimum(dist, _POW.size - 2, out=dist)  # -1 (past the end) -> the final 0
    v = _POW[dist]
    v *= data + np.uint64(1)
    out = np.zeros(data.size + 1, dtype=np.uint64)
    np.cumsum(v, out=out[1:])
    return out


def split_labels(
    names: pl.Series, rules: SuffixRules | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(codes, lengths, tld_class): the registered labels' character codes, one flat
    int32 array (label after label); each label's length, 0 when the name is not
    scorable (empty, > 253 chars, IP literal, reverse `.arpa` name, single label, bare
    public suffix); and each name's suffix class (index into `TLD_CLASSES`)."""
    rules = rules or suffix_rules()
    data, start, end = name_buffers(names)
    n = start.size
    if n == 0 or data.size == 0:
        return np.zeros(0, np.int32), np.zeros(n, np.int64), np.full(n, 3, np.int64)
    row = np.repeat(np.arange(n), end - start)  # the row of every byte
    last = data[np.maximum(end - 1, 0)]
    end = end - ((end > start) & (last == _DOT))  # one trailing dot
    dots = np.flatnonzero(data == _DOT)
    dots = dots[dots < end[row[dots]]]
    n_dots = np.bincount(row[dots], minlength=n)
    first = np.cumsum(n_dots) - n_dots
    colon = np.bincount(row[data == _COLON], minlength=n)
    cum = _prefix_hashes(data, row, end)
    top_dot = max(dots.size - 1, 0)

    def kth_dot(k: np.ndarray | int, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """Position of the k-th last dot of `rows` (k >= 1), -1 when there is none."""
        nd = n_dots[rows]
        pos = dots[np.clip(first[rows] + nd - k, 0, top_dot)] if dots.size else np.zeros(1)
        return np.where(k <= nd, pos, -1)

    n_labels = n_dots + 1
    ps = np.ones(n, dtype=np.int64)  # an unknown TLD is a public suffix of one label
    exc = np.zeros(n, dtype=np.int64)
    at1 = kth_dot(1) + 1
    at1 = np.where(at1 > 0, at1, start)
    tld_flags = rules.lookup(cum[end] - cum[at1])
    active = np.flatnonzero(n_labels >= 2)
    flags_prev = tld_flags[active]
    for k in range(2, rules.max_labels + 1):
        # only names whose (k-1)-label suffix leads to a longer rule go on
        go = (flags_prev & (_PARENT | _WILD)) > 0
        active, flags_prev = active[go], flags_prev[go]
        if active.size == 0:
            break
        at = np.where(k < n_labels[active], kth_dot(k, active) + 1, start[active])
        f = rules.lookup(cum[end[active]] - cum[at])
        hit = ((f & _RULE) > 0) | ((flags_prev & _WILD) > 0)
        ps[active[hit]] = k
        e = (f & _EXC) > 0
        exc[active[e]] = k - 1
        keep = n_labels[active] > k
        active, flags_prev = active[keep], f[keep]
    ps = np.where(exc > 0, exc, ps)
    # a dynamic-DNS zone asked for itself (`dyndns.org`) is an ordinary registration
    bare = np.flatnonzero((ps >= n_labels) & (n_labels >= 2))
    if bare.size:
        own = rules.lookup(cum[end[bare]] - cum[start[bare]])
        ps[bare[(own & _DDNS) > 0]] -= 1
    length = end - start
    tail = data[np.maximum(end - 1, 0)]
    bad = (
        (length <= 0)
        | (length > MAX_NAME)
        | (colon > 0)
        | ((tail >= ord("0")) & (tail <= ord("9")))  # IPv4 literal or numeric TLD
        | ((tld_flags & _ARPA) > 0)  # reverse names
        | (n_dots == 0)
        | (ps >= n_labels)  # a bare public suffix has no registered label
    )
    lab_end = np.where(bad, 0, kth_dot(ps))
    lab_start = np.where(bad, 0, np.where(ps < n_dots, kth_dot(ps + 1) + 1, start))
    # punycode (`xn--<ASCII letters>-<encoded deltas>`): only the ASCII part says
    # anything about the name; the deltas look random by construction, and a label
    # without ASCII letters (all-CJK, say) cannot be judged by these statistics: NaN
    xn = ~bad & (lab_end - lab_start > 4)
    if xn.any():
        pre = data[np.clip(lab_start[:, None] + np.arange(4), 0, data.size - 1)]
        xn &= (pre == np.frombuffer(b"xn--", np.uint8)).all(axis=1)
        rows = np.flatnonzero(xn)
        if rows.size:
            at = lab_start[rows, None] + 4 + np.arange(MAX_LABEL)
            inside = at < lab_end[rows, None]
            hyphen = inside & (data[np.minimum(at, data.size - 1)] == ord("-"))
            last = MAX_LABEL - 1 - np.argmax(hyphen[:, ::-1], axis=1)
            lab_start[rows] += 4
            lab_end[rows] = np.where(hyphen.any(axis=1), lab_start[rows] + last, lab_start[rows])
    lengths = np.clip(lab_end - lab_start, 0, MAX_LABEL)
    offs = np.cumsum(lengths) - lengths
    idx = np.repeat(lab_start - offs, lengths) + np.arange(int(lengths.sum()))
    codes = _CODES[data[idx]]
    one = ps == 1
    tld_len = end - at1
    cls = np.where(one & (tld_len == 2), 2, 3)  # two letters: a ccTLD; else gTLD/unknown
    cls = np.where(one & ((tld_flags & _NETORG) > 0), 1, cls)
    cls = np.where(one & ((tld_flags & _COM) > 0), 0, cls)
    ddns = np.zeros(n, dtype=bool)
    if (~one).any():
        sfx_at = np.where(~one & ~bad, lab_end + 1, start)
        ddns = (rules.lookup(cum[end] - cum[np.minimum(sfx_at, end)]) & _DDNS) > 0
    cls = np.where(~one, np.where(ddns, 5, 4), cls)
    return codes, lengths, cls


def features(names: list[str] | pl.Series, tables: dict[str, np.ndarray]) -> np.ndarray:
    """(n, len(FEATURES)) float64 feature matrix; rows of unscorable names are NaN."""
    return features_ngram(names, tables, None)[0]


_T = TypeVar("_T")
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def map_chunks(fn: Callable[[int], _T], n: int) -> list[_T]:
    """`fn(start)` for the start of every `CHUNK` of `n` names, results in order.

    Chunks run on a small shared thread pool: numpy releases the GIL in the gathers,
    reductions and searches that make up most of a chunk, so on 2 cores scoring runs
    1.6-1.8x as fast. One chunk (a stream batch) stays on the caller's thread.
    """
    global _pool
    starts = range(0, n, CHUNK)
    if len(starts) < 2:
        return [fn(i) for i in starts]
    with _pool_lock:
        if _pool is None:
            workers = max(1, min(4, os.cpu_count() or 1))
            _pool = ThreadPoolExecutor(workers, thread_name_prefix="lightsoc-dga")
    return list(_pool.map(fn, starts))


def features_ngram(
    names: list[str] | pl.Series,
    tables: dict[str, np.ndarray],
    ngram: np.ndarray | None,
    wide: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The feature matrix and, per name, the sum of the `ngram` weights of its hashed
    n-grams (as `ngram_matrix` weighs them; 0 when `ngram` is None) plus that of the
    `wide` weights of its hashed 4-/5-grams (as `dga_wide.wide_matrix` weighs them).
    One label split serves all."""
    series = names if isinstance(names, pl.Series) else pl.Series("name", names, dtype=pl.Utf8)
    parts = map_chunks(
        lambda i: _features_chunk(series.slice(i, CHUNK), tables, ngram, wide), len(series)
    )
    if not parts:
        return np.zeros((0, len(FEATURES))), np.zeros(0)
    return np.vstack([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _features_chunk(
    series: pl.Series,
    tables: dict[str, np.ndarray],
    ngram: np.ndarray | None,
    wide: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    codes, lengths, cls = split_labels(series)
    n = lengths.size
    x = np.full((n, len(FEATURES)), np.nan)
    z = np.zeros(n)
    ok = lengths > 0
    m = int(ok.sum())
    if m == 0:
        return x, z
    lens = lengths[ok]
    starts = np.cumsum(lens) - lens
    L = lens.astype(np.float64)

    def per_label(values: np.ndarray) -> np.ndarray:
        """Sum of a per-character value over each label (1-D arrays stay fast)."""
        return np.add.reduceat(values, starts, dtype=np.float64)

    # character classes counted per label in one bincount over (label, category)
    cat = np.bincount(np.repeat(np.arange(m) * 8, lens) + _CAT[codes], minlength=m * 8)
    cat = cat.reshape(m, 8).astype(np.float64)
    vowels, cons = cat[:, 2] + cat[:, 3], cat[:, 0] + cat[:, 1]
    digits, hyphens = cat[:, 4], cat[:, 5]
    hexes = cat[:, 1] + cat[:, 3] + digits
    # sum(n_c log n_c) and the number of distinct characters, as sums over the
    # occurrences of log2(n_c) and 1/n_c (n_c: how often that character is in the label)
    key = np.repeat(np.arange(m) * ALPHABET, lens) + codes
    occ = np.bincount(key, minlength=m * ALPHABET)[key]
    xlogx, distinct = per_label(_LOG2[occ]), per_label(_INV[occ])
    cl = _CLASS[codes]
    ld = _LD[cl]  # 0 other, 1 letter, 2 digit
    prev_ld = np.r_[0, ld[:-1]]
    prev_ld[starts] = 0
    switches = per_label((ld * prev_ld == 2).view(np.int8))  # letter<->digit
    g, closing, pos = N.grams(codes, starts, lens)
    if ngram is not None:
        inner, ends = N.ngram_index(g, closing)
        wsum = ngram[inner[0]] + ngram[inner[1]] + ngram[inner[2]]
        zl = per_label(wsum) + ngram[ends[0]] + ngram[ends[1]]
        z[ok] = zl / np.sqrt(3.0 * L + 2.0)
    if wide is not None:
        h4, h5 = N.wide_index(g)
        z[ok] += per_label(wide[h4] + wide[h5]) / np.sqrt(2.0 * L)
    # runs of one character class: a run starts where the class changes or a label does
    change = np.r_[True, cl[1:] != cl[:-1]]
    change[starts] = True
    at = np.arange(codes.size)
    run = at - np.maximum.accumulate(np.where(change, at, 0)) + 1
    cons_run = np.maximum.reduceat(np.where(cl == 1, run, 0), starts)
    digit_run = np.maximum.reduceat(np.where(cl == 3, run, 0), starts)
    grams = N.ngram_columns(g, closing, pos, starts, lens, tables)
    onehot = np.zeros((m, len(TLD_CLASSES)))
    onehot[np.arange(m), cls[ok]] = 1.0
    x[ok] = np.column_stack(
        [
            L,
            np.log2(L) - xlogx / L,  # Shannon entropy of the label's characters
            digits / L,
            vowels / L,
            cons / L,
            cons_run,
            digit_run,
            hyphens,
            distinct / L,
            switches / L,
            ((hexes == lens) & (digits > 0) & (lens >= 8)).astype(np.float64),
            *grams,
            onehot,
        ]
    )
    return x, z
