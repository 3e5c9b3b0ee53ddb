"""Deterministic generator of a large combined-format access log for benchmarks.

``write_combined_log(path, lines, seed)`` writes ``lines`` nginx/apache combined
lines spread over one day (2024-03-01, UTC), from ~5,000 public client IPs with
skewed activity, a realistic mix of paths, statuses, referrers and user agents,
and about 1% attack requests. One million lines take a few seconds.

    python bench/gen_access_log.py OUT --lines 1000000 [--seed 1]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, quote_plus

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
DAY_START = datetime(2024, 3, 1, tzinfo=UTC)
CHUNK = 100_000

# Public first octets (consumer ISPs and clouds in many countries); no private/reserved ranges.
FIRST_OCTETS = (
    1,
    14,
    24,
    27,
    36,
    37,
    41,
    42,
    49,
    58,
    59,
    60,
    61,
    66,
    68,
    71,
    73,
    76,
    77,
    79,
    81,
    82,
    83,
    84,
    86,
    87,
    88,
    89,
    90,
    91,
    92,
    93,
    94,
    95,
    98,
    99,
    101,
    103,
    106,
    109,
    110,
    111,
    112,
    113,
    114,
    115,
    116,
    117,
    118,
    119,
    120,
    121,
    122,
    123,
    124,
    125,
    126,
    142,
    151,
    153,
    175,
    176,
    177,
    178,
    180,
    181,
    182,
    183,
    185,
    186,
    187,
    188,
    189,
    190,
    191,
    193,
    194,
    195,
    197,
    200,
    201,
    202,
    203,
    210,
    211,
    212,
    213,
    217,
    218,
    219,
    220,
    221,
    222,
    223,
)
UAS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.0.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (X11; Linux x86_64; rv:124.0) Gecko/20100101 Firefox/124.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.47(0x18002f2c) NetType/WIFI Language/zh_CN",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)",
    "curl/8.5.0",
    "python-requests/2.31.0",
)
UA_WEIGHTS = (18, 10, 9, 6, 7, 2, 6, 14, 8, 4, 6, 4, 2, 2, 1, 1)
STATUSES = (
    ("200", 80.0),
    ("304", 9.0),
    ("404", 5.5),
    ("301", 2.0),
    ("302", 1.5),
    ("206", 0.5),
    ("403", 0.6),
    ("500", 0.4),
    ("502", 0.2),
    ("400", 0.3),
)
QUERIES = (
    "usb-c cable",
    "wireless earbuds",
    "iphone 15 case",
    "gaming mouse",
    "4k monitor",
    "蓝牙耳机",
    "机械键盘",
    "laptop stand",
    "ssd 1tb",
    "smart watch",
    "充电宝",
    "webcam",
)
ATTACKS = (
    "/search?q=1' OR '1'='1",
    "/api/products?id=1 UNION SELECT NULL,NULL--",
    "/search?q=<script>alert(1)</script>",
    "/download?file=../../../../etc/passwd",
    "/.env",
    "/.git/config",
    "/wp-login.php",
    "/phpmyadmin/index.php",
    "/shell.php?cmd=id",
    "/cgi-bin/.%2e/.%2e/.%2e/.%2e/etc/passwd",
    "/admin/",
    "/server-status",
)


def _ips(rng: random.Random, n: int) -> list[str]:
    seen: dict[str, None] = {}
    while len(seen) < n:
        ip = (
            f"{rng.choice(FIRST_OCTETS)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}."
            f"{rng.randint(1, 254)}"
        )
        seen[ip] = None
    return list(seen)


def _paths(rng: random.Random) -> tuple[list[str], list[float]]:
    """Request targets with popularity weights; ~1% of the weight is attack traffic."""
    paths: list[str] = []
    weights: list[float] = []

    def add(p: str, w: float) -> None:
        paths.append(p)
        weights.append(w)

    for p, w in (
        ("/", 400),
        ("/favicon.ico", 150),
        ("/robots.txt", 20),
        ("/cart", 60),
        ("/api/cart", 300),
        ("/login", 25),
        ("/account", 30),
        ("/checkout", 15),
        ("/static/css/main.3f2a1c.css", 250),
        ("/static/js/vendor.8b1e2d.js", 250),
        ("/static/js/app.5c7d9e.js", 250),
        ("/static/img/logo.svg", 240),
        ("/static/fonts/inter-var.woff2", 200),
        ("/sitemap.xml", 5),
    ):
        add(p, w)
    for pid in range(1000, 9000):
        pop = 60.0 / (1 + (pid - 1000) / 40)
        add(f"/products/{pid}", pop)
        add(f"/images/products/{pid}_800.jpg", pop * 0.9)
        add(f"/images/products/{pid}_200.jpg", pop * 1.6)
        if pid % 4 == 0:
            add(f"/api/recommendations?product={pid}", pop * 0.8)
    for c in ("laptops", "phones", "audio", "cameras", "accessories", "smart-home", "gaming"):
        for page in range(1, 21):
            add(f"/category/{c}?page={page}", 30.0 / page)
    for q in QUERIES:
        for page in range(1, 6):
            add(f"/search?q={quote_plus(q)}&page={page}", 12.0 / page)
    for _ in range(500):
        add(f"/checkout/complete?order={rng.randint(100_000, 999_999)}", 0.1)
    total = sum(weights)
    for a in ATTACKS:
        path, _, query = a.partition("?")
        add(path + ("?" + quote(query, safe="=&") if query else ""), total * 0.01 / len(ATTACKS))
    return paths, weights


def _time_strings(lines: int) -> list[str]:
    """``[dd/Mon/yyyy:HH:MM:SS +0000]`` for each second of the day that lines fall on."""
    base = int(DAY_START.timestamp())
    out = []
    for s in range(86_400):
        d = datetime.fromtimestamp(base + s, UTC)
        out.append(
            f"{d.day:02d}/{MONTHS[d.month - 1]}/{d.year}:{d.hour:02d}:{d.minute:02d}:"
            f"{d.second:02d} +0000"
        )
    return out


def write_combined_log(path: Path, lines: int = 1_000_000, seed: int = 1) -> int:
    """Write ``lines`` combined-format lines to ``path``; returns the bytes written."""
    rng = random.Random(seed)
    ips = _ips(rng, 5_000)
    ip_cum: list[float] = []
    acc = 0.0
    for _ in ips:
        acc += min(rng.paretovariate(1.1), 200.0)
        ip_cum.append(acc)
    paths, path_w = _paths(rng)
    path_cum: list[float] = []
    acc = 0.0
    for w in path_w:
        acc += w
        path_cum.append(acc)
    methods = ["GET"] * 19 + ["POST"]
    pages = [p for p in paths[:3000] if p.startswith(("/products/", "/category/", "/search"))]
    refs = ["-"] * 6 + [
        "https://www.google.com/",
        "https://www.bing.com/",
        "https://www.baidu.com/",
    ]
    refs += [f"https://shop.example.com{p}" for p in rng.sample(pages, 40)]
    sizes = [str(rng.randint(150, 350_000)) for _ in range(4_096)]
    statuses = [s for s, _ in STATUSES]
    status_w = [w for _, w in STATUSES]
    times = _time_strings(lines)
    written = 0
    with open(path, "wb") as f:
        for lo in range(0, lines, CHUNK):
            n = min(CHUNK, lines - lo)
            c_ip = rng.choices(ips, cum_weights=ip_cum, k=n)
            c_path = rng.choices(paths, cum_weights=path_cum, k=n)
            c_status = rng.choices(statuses, status_w, k=n)
            c_ua = rng.choices(UAS, UA_WEIGHTS, k=n)
            c_ref = rng.choices(refs, k=n)
            c_method = rng.choices(methods, k=n)
            c_size = rng.choices(sizes, k=n)
            buf = "".join(
                [
                    f'{ip} - - [{times[(lo + i) * 86_400 // lines]}] "{m} {p} HTTP/1.1" {st} '
                    f'{"0" if st == "304" else sz} "{ref}" "{ua}"\n'
                    for i, (ip, m, p, st, sz, ref, ua) in enumerate(
                        zip(c_ip, c_method, c_path, c_status, c_size, c_ref, c_ua, strict=True)
                    )
                ]
            ).encode()
            f.write(buf)
            written += len(buf)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    t = time.perf_counter()
    n = write_combined_log(args.out, args.lines, args.seed)
    dt = time.perf_counter() - t
    print(
        f"wrote {args.lines:,} lines, {n / 2**20:.1f} MiB to {args.out} in {dt:.2f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
