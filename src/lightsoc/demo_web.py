"""Benign web traffic for ``lightsoc demo``.

An online shop served by two nginx nodes (``web1``, ``web2``) and a corporate /
docs site on apache (``web3``): browser sessions with page views, static assets
and XHR calls, search-engine crawlers and an internal uptime monitor, with a
diurnal rate in the organisation's local time (UTC+8).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from urllib.parse import quote_plus

SHOP_SERVERS = ("web1", "web2")
DOCS_SERVER = "web3"
SHOP_HOST = "shop.example.com"
DOCS_HOST = "www.example.com"
LOCAL_UTC_OFFSET_H = 8
# Relative traffic per local hour (0..23): quiet nights, evening peak for the shop.
# fmt: off
DIURNAL = (0.30, 0.18, 0.12, 0.09, 0.08, 0.10, 0.18, 0.35, 0.60, 0.85, 0.95, 1.00,
           0.95, 0.95, 1.00, 1.00, 0.95, 0.90, 0.95, 1.05, 1.15, 1.15, 0.95, 0.60)
# fmt: on
SESSIONS_PER_HOUR = 115.0  # public browser sessions at DIURNAL == 1.0
OFFICE_SESSIONS_PER_HOUR = 14.0


@dataclass(slots=True)
class Hit:
    """One HTTP request as a web server logs it; ``kind`` marks injected attacks."""

    ts: float
    server: str
    ip: str
    method: str
    target: str
    status: int
    size: int
    ref: str = "-"
    ua: str | bytes = "-"
    proto: str = "HTTP/1.1"
    kind: str | None = None
    messy: str | None = None
    request: str | None = None  # raw request line when it is not "METHOD target proto"
    crlf: bool = False


@dataclass(slots=True)
class Client:
    """A browsing client: address, browser and whether its cache is warm."""

    ip: str
    ua: str
    proto: str
    returning: bool
    mobile_ios: bool = False


# (country, first octet, second octet range): real consumer-ISP allocations.
PUBLIC_PREFIXES: tuple[tuple[str, int, int, int, int], ...] = (
    # country, first octet, second low, second high, weight
    ("CN", 114, 80, 95, 8),
    ("CN", 117, 136, 143, 6),
    ("CN", 183, 0, 63, 6),
    ("CN", 116, 224, 239, 5),
    ("US", 73, 0, 255, 14),
    ("DE", 79, 192, 255, 5),
    ("DE", 91, 0, 63, 3),
    ("GB", 86, 128, 191, 6),
    ("FR", 90, 60, 127, 5),
    ("JP", 126, 0, 255, 6),
    ("BR", 177, 0, 255, 3),
    ("BR", 189, 0, 255, 2),
    ("IN", 49, 32, 47, 3),
    ("IN", 106, 192, 223, 3),
    ("RU", 95, 24, 31, 4),
    ("AU", 1, 120, 127, 3),
    ("CA", 99, 224, 255, 3),
    ("KR", 175, 192, 255, 4),
    ("VN", 113, 160, 191, 2),
    ("ID", 110, 136, 139, 2),
    ("AR", 181, 0, 31, 1),
)

DESKTOP_UAS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.0.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (X11; Linux x86_64; rv:124.0) Gecko/20100101 Firefox/124.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Safari/605.1.15",
)
IOS_UAS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.47(0x18002f2c) NetType/WIFI Language/zh_CN",
    "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
)
ANDROID_UAS = (
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36",
)
CRAWLERS = (  # (ip prefix, ua, requests per day)
    ("66.249.66.", "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", 900),
    ("40.77.167.", "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", 400),
    (
        "220.181.108.",
        "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)",
        300,
    ),
)
MONITOR_IP = "10.20.0.5"
MONITOR_UA = "Blackbox Exporter/0.25.0"
LANDING_REFS = (
    ("https://www.google.com/", 40),
    ("https://www.bing.com/", 7),
    ("https://www.baidu.com/", 8),
    ("https://duckduckgo.com/", 3),
    ("https://t.co/", 3),
    ("-", 39),
)

CATEGORIES = (
    "laptops",
    "phones",
    "audio",
    "cameras",
    "accessories",
    "smart-home",
    "gaming",
    "wearables",
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
    "noise cancelling headphones",
    "hdmi 2.1 cable",
    "webcam",
    "移动硬盘",
)
SHOP_ASSETS = (
    "/static/css/main.3f2a1c.css",
    "/static/js/vendor.8b1e2d.js",
    "/static/js/app.5c7d9e.js",
    "/static/img/logo.svg",
    "/static/fonts/inter-var.woff2",
    "/favicon.ico",
)
DOCS_ASSETS = (
    "/assets/css/site.css",
    "/assets/js/site.js",
    "/assets/img/logo.png",
    "/assets/img/hero.webp",
    "/favicon.ico",
)
DOCS_TOPICS = (
    "getting-started",
    "installation",
    "configuration",
    "api",
    "faq",
    "release-notes",
    "security",
    "integrations",
)
DOCS_PAGES = (
    "/",
    "/about",
    "/careers",
    "/contact",
    "/news",
    "/docs/",
    "/blog/",
    "/blog/2024/spring-sale-recap",
    "/blog/2024/new-warehouse-in-shenzhen",
    "/blog/2024/how-we-ship",
    "/downloads/catalogue-2024.pdf",
    "/downloads/warranty-terms.pdf",
)


def ip_from_prefix(rng: random.Random, first: int, lo: int, hi: int) -> str:
    """A random host address inside ``first.lo-hi.x.y``."""
    return f"{first}.{rng.randint(lo, hi)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def public_ip(rng: random.Random) -> str:
    """A random consumer address from one of the country prefixes."""
    pfx = rng.choices(PUBLIC_PREFIXES, weights=[p[4] for p in PUBLIC_PREFIXES])[0]
    return ip_from_prefix(rng, pfx[1], pfx[2], pfx[3])


def asset_size(path: str) -> int:
    """Stable response size for a static path (same file, same size)."""
    h = 0
    for ch in path:
        h = (h * 131 + ord(ch)) % 1_000_003
    if path.endswith(".js"):
        return 120_000 + h % 300_000
    if path.endswith((".jpg", ".webp", ".png")):
        return 9_000 + h % 190_000
    if path.endswith(".pdf"):
        return 800_000 + h % 4_000_000
    return 1_000 + h % 40_000


def make_clients(
    rng: random.Random, n_public: int = 330, n_office: int = 40
) -> tuple[list[Client], list[float], list[Client]]:
    """Public clients with activity weights, and internal office clients."""
    public: list[Client] = []
    seen: set[str] = set()
    while len(public) < n_public:
        ip = public_ip(rng)
        if ip in seen:
            continue
        seen.add(ip)
        r = rng.random()
        if r < 0.45:
            ua, ios = rng.choice(DESKTOP_UAS), False
        elif r < 0.75:
            ua, ios = rng.choice(IOS_UAS), True
        else:
            ua, ios = rng.choice(ANDROID_UAS), False
        proto = "HTTP/2.0" if rng.random() < 0.7 else "HTTP/1.1"
        public.append(Client(ip, ua, proto, rng.random() < 0.3, ios))
    weights = [min(rng.paretovariate(1.3), 25.0) for _ in public]
    office = [
        Client(
            f"10.20.{rng.randint(1, 8)}.{rng.randint(10, 250)}",
            rng.choice(DESKTOP_UAS),
            "HTTP/2.0",
            True,
        )
        for _ in range(n_office)
    ]
    return public, weights, office


def _product(rng: random.Random) -> int:
    return 1000 + min(999, int(rng.expovariate(1 / 120)))


def _shop_page(rng: random.Random, first: bool) -> str:
    r = rng.random()
    if first:
        if r < 0.35:
            return "/"
        if r < 0.75:
            return f"/products/{_product(rng)}"
        if r < 0.90:
            return f"/category/{rng.choice(CATEGORIES)}"
        return f"/search?q={quote_plus(rng.choice(QUERIES))}"
    table = (
        (0.45, "product"),
        (0.60, "category"),
        (0.75, "search"),
        (0.80, "/"),
        (0.90, "/cart"),
        (0.94, "/account"),
        (0.97, "/login"),
        (1.0, "/help/shipping"),
    )
    page = next((p for limit, p in table if r < limit), "/")
    if page == "product":
        return f"/products/{_product(rng)}"
    if page == "category":
        return f"/category/{rng.choice(CATEGORIES)}"
    if page == "search":
        return f"/search?q={quote_plus(rng.choice(QUERIES))}"
    return page


def _docs_page(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.45:
        topic = rng.choice(DOCS_TOPICS)
        return f"/docs/{topic}" if rng.random() < 0.6 else f"/docs/{topic}/overview"
    return rng.choice(DOCS_PAGES)


class SessionWriter:
    """Emits the requests of browser sessions into a list of hits."""

    def __init__(self, rng: random.Random, hits: list[Hit]) -> None:
        self.rng = rng
        self.hits = hits

    def _hit(
        self,
        ts: float,
        server: str,
        c: Client,
        method: str,
        target: str,
        status: int,
        size: int,
        ref: str,
    ) -> None:
        proto = c.proto if server != DOCS_SERVER else "HTTP/1.1"
        self.hits.append(Hit(ts, server, c.ip, method, target, status, size, ref, c.ua, proto))

    def _static(self, ts: float, server: str, c: Client, path: str, ref: str) -> None:
        if c.returning and self.rng.random() < 0.8:
            self._hit(ts, server, c, "GET", path, 304, 0, ref)
        else:
            self._hit(ts, server, c, "GET", path, 200, asset_size(path), ref)

    def _api(self, ts: float, server: str, c: Client, target: str, ref: str) -> None:
        rng = self.rng
        if rng.random() < 0.002:
            self._hit(ts, server, c, "GET", target, 500, 173, ref)
        else:
            self._hit(ts, server, c, "GET", target, 200, rng.randint(80, 2600), ref)

    def shop(self, t: float, server: str, c: Client) -> None:
        """One shop session: landing page, assets, a few more pages and maybe an order."""
        rng, base = self.rng, f"https://{SHOP_HOST}"
        ref = rng.choices([r for r, _ in LANDING_REFS], [w for _, w in LANDING_REFS])[0]
        for i in range(min(12, 1 + int(rng.expovariate(1 / 2.6)))):
            page = _shop_page(rng, i == 0)
            if i == 0 and page.startswith("/products/") and rng.random() < 0.03:
                self._hit(t, server, c, "GET", page + "/", 301, 169, ref)
                t += rng.uniform(0.05, 0.3)
            if page.startswith("/products/") and rng.random() < 0.004:
                self._hit(
                    t,
                    server,
                    c,
                    "GET",
                    f"/products/{rng.randint(9000, 9999)}",
                    404,
                    rng.randint(3000, 3400),
                    ref,
                )
                t += rng.uniform(5, 20)
                continue
            self._hit(t, server, c, "GET", page, 200, rng.randint(12_000, 64_000), ref)
            here = base + page
            dt = t + rng.uniform(0.05, 0.4)
            if i == 0:
                for a in SHOP_ASSETS:
                    self._static(dt, server, c, a, here)
                    dt += rng.uniform(0.01, 0.15)
                if c.mobile_ios and rng.random() < 0.3:
                    for p in ("/apple-touch-icon-precomposed.png", "/apple-touch-icon.png"):
                        self._hit(dt, server, c, "GET", p, 404, 153, "-")
            if page.startswith("/products/"):
                pid = page.rsplit("/", 1)[1]
                self._static(dt, server, c, f"/images/products/{pid}_800.jpg", here)
                for _ in range(rng.randint(1, 4)):
                    self._static(
                        dt + 0.1, server, c, f"/images/products/{_product(rng)}_200.jpg", here
                    )
                self._api(dt + 0.2, server, c, f"/api/recommendations?product={pid}", here)
                if rng.random() < 0.10:
                    t2 = dt + rng.uniform(4, 40)
                    self._hit(t2, server, c, "POST", "/api/cart", 200, rng.randint(150, 420), here)
            elif page.startswith(("/category/", "/search")):
                for _ in range(rng.randint(4, 10)):
                    self._static(
                        dt + 0.1, server, c, f"/images/products/{_product(rng)}_200.jpg", here
                    )
            elif page == "/cart" and rng.random() < 0.25:
                t2 = dt + rng.uniform(10, 60)
                self._hit(t2, server, c, "GET", "/checkout", 200, rng.randint(18_000, 24_000), here)
                order = rng.randint(100_000, 999_999)
                self._hit(
                    t2 + rng.uniform(20, 90),
                    server,
                    c,
                    "POST",
                    "/api/orders",
                    201,
                    rng.randint(300, 700),
                    f"{base}/checkout",
                )
                t = t2 + 95
                self._hit(
                    t,
                    server,
                    c,
                    "GET",
                    f"/checkout/complete?order={order}",
                    200,
                    rng.randint(9_000, 11_000),
                    f"{base}/checkout",
                )
            elif page == "/login":
                t2 = dt + rng.uniform(6, 30)
                self._hit(t2, server, c, "POST", "/login", 302, 0, here)
                self._hit(
                    t2 + 0.3, server, c, "GET", "/account", 200, rng.randint(14_000, 20_000), here
                )
            self._api(dt + 0.25, server, c, "/api/cart", here)
            ref = here
            t += 3 + min(rng.expovariate(1 / 35), 600)

    def docs(self, t: float, c: Client) -> None:
        """One session on the apache corporate / docs site."""
        rng, base = self.rng, f"https://{DOCS_HOST}"
        ref = rng.choices([r for r, _ in LANDING_REFS], [w for _, w in LANDING_REFS])[0]
        for i in range(min(8, 1 + int(rng.expovariate(1 / 1.8)))):
            page = _docs_page(rng)
            size = asset_size(page) if page.endswith(".pdf") else rng.randint(9_000, 48_000)
            self._hit(t, DOCS_SERVER, c, "GET", page, 200, size, ref)
            here = base + page
            if i == 0:
                dt = t + rng.uniform(0.05, 0.4)
                for a in DOCS_ASSETS:
                    self._static(dt, DOCS_SERVER, c, a, here)
                    dt += rng.uniform(0.01, 0.2)
            ref = here
            t += 4 + min(rng.expovariate(1 / 50), 900)


def _bot_target(rng: random.Random, server: str) -> tuple[str, int, int]:
    r = rng.random()
    if r < 0.05:
        return "/robots.txt", 200, 312
    if r < 0.08:
        return "/sitemap.xml", 200, 48_211
    if r < 0.10:
        return f"/products/{rng.randint(9000, 9999)}", 404, 3211
    page = _docs_page(rng) if server == DOCS_SERVER else _shop_page(rng, first=False)
    return page, 200, rng.randint(9_000, 64_000)


def benign(rng: random.Random, start: float, end: float) -> list[Hit]:
    """All benign requests in ``[start, end)`` (unsorted; callers sort and clip)."""
    hits: list[Hit] = []
    writer = SessionWriter(rng, hits)
    public, weights, office = make_clients(rng)
    t = start
    while t < end:
        span = min(3600.0, end - t)
        local_hour = int(((t // 3600) + LOCAL_UTC_OFFSET_H) % 24)
        w = DIURNAL[local_hour] * span / 3600.0
        for _ in range(round(SESSIONS_PER_HOUR * w * rng.uniform(0.85, 1.15))):
            c = rng.choices(public, weights)[0]
            ts = t + rng.random() * span
            if rng.random() < 0.8:
                writer.shop(ts, rng.choice(SHOP_SERVERS), c)
            else:
                writer.docs(ts, c)
        work = 9 <= local_hour < 18
        n_office = OFFICE_SESSIONS_PER_HOUR * (1.0 if work else 0.05) * span / 3600.0
        for _ in range(round(n_office * rng.uniform(0.8, 1.2))):
            c = rng.choice(office)
            ts = t + rng.random() * span
            if rng.random() < 0.6:
                writer.docs(ts, c)
            else:
                writer.shop(ts, rng.choice(SHOP_SERVERS), c)
        t += span
    hours = (end - start) / 3600.0
    for prefix, ua, per_day in CRAWLERS:
        ips = [f"{prefix}{rng.randint(1, 254)}" for _ in range(3)]
        for _ in range(round(per_day * hours / 24)):
            server = rng.choice(("web1", "web2", "web3"))
            target, status, size = _bot_target(rng, server)
            hits.append(
                Hit(
                    start + rng.random() * (end - start),
                    server,
                    rng.choice(ips),
                    "GET",
                    target,
                    status,
                    size,
                    "-",
                    ua,
                )
            )
    for server in ("web1", "web2", "web3"):
        path = "/health" if server == DOCS_SERVER else "/healthz"
        ts = start + rng.uniform(0, 60)
        while ts < end:
            hits.append(Hit(ts, server, MONITOR_IP, "GET", path, 200, 2, "-", MONITOR_UA))
            ts += 60.0
    return hits
