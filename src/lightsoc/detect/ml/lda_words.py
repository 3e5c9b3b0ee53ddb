"""Words for Spot-style suspicious connects: one document per IP, one word per record.

Apache Spot describes every record by a few discretised features joined into
one "word" and gives it to the document of each IP involved; LDA then learns
what the usual words of each kind of host are, and a record whose word is
improbable for its IP's topic mix is suspicious. The words here follow Spot:

- **flow**: protocol, port class, hour, ``ceil(log2(bytes+1))``,
  ``ceil(log2(packets+1))``. The port class is the low port when exactly one
  side is <= 1024 (that side is the server and its document's word is marked
  ``s``, the client's ``c``), ``L`` when both are, ``H`` when neither is and
  ``-`` without ports (ICMP). Each flow gives a word to both endpoints.
- **dns**: top-domain class, frame length bin, hour, subdomain length bin,
  subdomain entropy bin, label count, query type, response code; document = the
  client.
- **web**: domain class, hour, method, URI entropy bin, content class (from the
  path's extension: proxy logs' content type is rarely in access logs),
  user-agent frequency bin (within the scored batch, as Spot did per day), URI
  length bin, status; document = the client.

Spot used Alexa's top sites for the domain class; lightsoc has no such list at
run time, so the class is "popular here": a registered domain asked by at least
two clients and among the `TOP_DOMAINS` most widely asked in the training data
(kept in the model), ``i`` for an IP literal or a name with no registered domain.

Every function is vectorised polars; the output is a long frame of
``(_row, doc, word)`` (two rows per flow, one per DNS/web record).
"""

from __future__ import annotations

import polars as pl

ROW = "_row"
DOC = "doc"
WORD = "word"
SIDE = "side"  # "a" = source side of a flow (or the client), "b" = destination side
PEER = "peer"  # a flow's other endpoint: (doc, peer) is the connection the word belongs to
KINDS = ("flow", "dns", "web")
TOP_DOMAINS = 1000
LOW_PORT = 1024

_BINARY_EXT = r"\.(exe|dll|bin|zip|rar|7z|gz|tar|msi|ps1|sh|bat|jar|apk|dmg|iso|scr|vbs)$"
_SCRIPT_EXT = r"\.(php|asp|aspx|jsp|cgi|pl|py|do|action)$"
_STATIC_EXT = r"\.(js|css|map|woff2?|ttf|eot|svg)$"
_IMAGE_EXT = r"\.(png|jpe?g|gif|ico|webp|bmp)$"
_PAGE_EXT = r"(/|\.html?|^[^.]*)$"


def col(df: pl.DataFrame, name: str, dtype: pl.DataType = pl.Utf8) -> pl.Expr:
    """The column if the frame has it, else nulls (inputs come from many parsers)."""
    if name in df.columns:
        return pl.col(name)
    return pl.lit(None, dtype=dtype)


def log2_bin(expr: pl.Expr) -> pl.Expr:
    """``ceil(log2(x+1))`` as text, ``x`` for a null or negative count."""
    v = expr.cast(pl.Float64)
    b = (v + 1).log(2).ceil().cast(pl.Int64).cast(pl.Utf8)
    return pl.when(v.is_null() | (v < 0)).then(pl.lit("x")).otherwise(b)


def hour(df: pl.DataFrame) -> pl.Expr:
    if "@timestamp" not in df.columns:
        return pl.lit("x")
    return pl.col("@timestamp").dt.hour().cast(pl.Utf8).fill_null("x")


def entropy(values: pl.Series) -> pl.Series:
    """Shannon entropy (bits per character) of each string; 0 for empty or null."""
    n = len(values)
    if n == 0:
        return pl.Series("entropy", [], dtype=pl.Float64)
    chars = (
        pl.DataFrame({ROW: pl.int_range(0, n, eager=True), "c": values.fill_null("")})
        .with_columns(pl.col("c").str.split(""))
        .explode("c")
        .filter(pl.col("c").is_not_null() & (pl.col("c") != ""))
        .group_by(ROW, "c")
        .len()
        .with_columns(p=pl.col("len") / pl.col("len").sum().over(ROW))
        .group_by(ROW)
        .agg(h=-(pl.col("p") * pl.col("p").log(2)).sum())
    )
    out = pl.DataFrame({ROW: pl.int_range(0, n, eager=True)}).join(chars, on=ROW, how="left")
    return out.sort(ROW)["h"].fill_null(0.0).alias("entropy")


def entropy_bin(values: pl.Series) -> pl.Series:
    """Entropy in half-bit steps (0..~12)."""
    return (entropy(values) * 2).floor().cast(pl.Int64).cast(pl.Utf8)


def flow_words(df: pl.DataFrame) -> pl.DataFrame:
    """``(_row, side, doc, word, peer)``: a word for the source's and the destination's document."""
    sp = col(df, "source.port", pl.Int64).cast(pl.Int64)
    dp = col(df, "destination.port", pl.Int64).cast(pl.Int64)
    proto = col(df, "network.transport").cast(pl.Utf8).str.to_lowercase().fill_null("x")
    total_bytes = pl.coalesce(
        col(df, "network.bytes", pl.Int64),
        col(df, "source.bytes", pl.Int64) + col(df, "destination.bytes", pl.Int64).fill_null(0),
        col(df, "destination.bytes", pl.Int64),
    )
    total_pkts = pl.coalesce(
        col(df, "network.packets", pl.Int64),
        col(df, "source.packets", pl.Int64) + col(df, "destination.packets", pl.Int64).fill_null(0),
        col(df, "destination.packets", pl.Int64),
    )
    src_low, dst_low = sp <= LOW_PORT, dp <= LOW_PORT
    no_ports = sp.is_null() | dp.is_null()
    port = (
        pl.when(no_ports)
        .then(pl.lit("-"))
        .when(src_low & dst_low)
        .then(pl.lit("L"))
        .when(dst_low)
        .then(dp.cast(pl.Utf8))
        .when(src_low)
        .then(sp.cast(pl.Utf8))
        .otherwise(pl.lit("H"))
    )
    # which side serves: marks its document's word "s" and the other's "c"
    server = (
        pl.when(no_ports | (src_low == dst_low))
        .then(pl.lit(""))
        .when(dst_low)
        .then(pl.lit("b"))
        .otherwise(pl.lit("a"))
    )
    base = pl.concat_str(
        [proto, port, hour(df), log2_bin(total_bytes), log2_bin(total_pkts)], separator=":"
    )
    w = df.select(
        pl.int_range(0, pl.len(), dtype=pl.Int64).alias(ROW),
        col(df, "source.ip").cast(pl.Utf8).alias("a"),
        col(df, "destination.ip").cast(pl.Utf8).alias("b"),
        base.alias("w"),
        server.alias("srv"),
    )

    def side(name: str) -> pl.DataFrame:
        mark = (
            pl.when(pl.col("srv") == "")
            .then(pl.lit("n"))
            .when(pl.col("srv") == name)
            .then(pl.lit("s"))
            .otherwise(pl.lit("c"))
        )
        return w.select(
            pl.col(ROW),
            pl.lit(name).alias(SIDE),
            pl.col(name).alias(DOC),
            pl.concat_str([mark, pl.col("w")], separator=":").alias(WORD),
            pl.col("b" if name == "a" else "a").alias(PEER),
        )

    return pl.concat([side("a"), side("b")]).filter(pl.col(DOC).is_not_null())


def top_domains(domains: pl.Series, clients: pl.Series, n: int = TOP_DOMAINS) -> list[str]:
    """The registered domains asked by most distinct clients (at least two), at most `n`."""
    df = pl.DataFrame({"d": domains.cast(pl.Utf8), "c": clients.cast(pl.Utf8)}).drop_nulls()
    if df.height == 0:
        return []
    ranked = (
        df.group_by("d")
        .agg(pl.col("c").n_unique().alias("k"))
        .filter(pl.col("k") >= 2)
        .sort(["k", "d"], descending=[True, False])
        .head(n)
    )
    return ranked["d"].to_list()


def domain_class(registered: pl.Expr, popular: list[str]) -> pl.Expr:
    """``p`` popular here, ``u`` unpopular, ``i`` no registered domain (IP literal, local)."""
    return (
        pl.when(registered.is_null() | (registered == ""))
        .then(pl.lit("i"))
        .when(registered.is_in(popular))
        .then(pl.lit("p"))
        .otherwise(pl.lit("u"))
    )


def registered_domain(df: pl.DataFrame, field: str, name_field: str) -> pl.Expr:
    """The registered domain, else the last two labels of the name (not for IP literals)."""
    name = col(df, name_field).cast(pl.Utf8).str.to_lowercase().str.strip_chars_end(".")
    fallback = (
        pl.when(name.str.contains(r"^[0-9.]+$|:"))
        .then(pl.lit(None, dtype=pl.Utf8))
        .otherwise(name.str.extract(r"([^.]+\.[^.]+)$"))
    )
    return pl.coalesce(col(df, field).cast(pl.Utf8).str.to_lowercase(), fallback)


#: ports a DNS server answers on (53, mDNS, LLMNR, DNS over TLS)
DNS_SERVER_PORTS = (53, 5353, 5355, 853)


def dns_client(df: pl.DataFrame) -> pl.Expr:
    """The asking host: the source, unless the record is in the response's direction.

    Packetbeat, lightsoc's capture decoder, Zeek and Suricata (eve v2) all give
    a query/response pair as one event with source = client, destination =
    server, whatever ``dns.type`` says; only a per-packet record of a response
    (source port a DNS server port, destination port not) has them the other
    way round, so that is the one case that takes the destination.
    """
    src, dst = col(df, "source.ip").cast(pl.Utf8), col(df, "destination.ip").cast(pl.Utf8)
    sp = col(df, "source.port", pl.Int64).cast(pl.Int64)
    dp = col(df, "destination.port", pl.Int64).cast(pl.Int64)
    reply = (
        sp.is_in(DNS_SERVER_PORTS).fill_null(False)
        & ~dp.is_in(DNS_SERVER_PORTS).fill_null(True)
        & dst.is_not_null()
    )
    return pl.when(reply).then(dst).otherwise(src)


def dns_words(df: pl.DataFrame, popular: list[str]) -> pl.DataFrame:
    """``(_row, side, doc, word)``, one word per query for its client's document."""
    name = col(df, "dns.question.name").cast(pl.Utf8).str.strip_chars_end(".")
    reg = registered_domain(df, "dns.question.registered_domain", "dns.question.name")
    # the subdomain field if the enricher set it, else the name minus its registered domain
    cut = name.str.to_lowercase().str.len_chars() - reg.str.len_chars() - 1
    derived = (
        pl.when(reg.is_not_null() & name.str.to_lowercase().str.ends_with(pl.lit(".") + reg))
        .then(name.str.head(cut))
        .otherwise(pl.lit(""))
    )
    sub = pl.coalesce(col(df, "dns.question.subdomain").cast(pl.Utf8), derived).fill_null("")
    frame = pl.coalesce(col(df, "network.bytes", pl.Int64), col(df, "source.bytes", pl.Int64))
    subs = df.with_columns(sub.alias("_s"))["_s"]  # with_columns: a missing field broadcasts
    base = df.select(
        domain_class(reg, popular).alias("dc"),
        log2_bin(frame).alias("fl"),
        hour(df).alias("h"),
        log2_bin(sub.str.len_chars()).alias("sl"),
        (name.str.count_matches(r"\.") + 1).fill_null(0).cast(pl.Utf8).alias("lc"),
        col(df, "dns.question.type").cast(pl.Utf8).fill_null("x").alias("qt"),
        col(df, "dns.response_code").cast(pl.Utf8).fill_null("x").alias("rc"),
        dns_client(df).alias(DOC),
    ).with_columns(entropy_bin(subs).alias("se"))
    return base.select(
        pl.int_range(0, pl.len(), dtype=pl.Int64).alias(ROW),
        pl.lit("a").alias(SIDE),
        pl.col(DOC),
        pl.concat_str(["dc", "fl", "h", "sl", "se", "lc", "qt", "rc"], separator=":").alias(WORD),
    ).filter(pl.col(DOC).is_not_null())


def content_class(path: pl.Expr) -> pl.Expr:
    p = path.str.to_lowercase()
    return (
        pl.when(path.is_null())
        .then(pl.lit("x"))
        .when(p.str.contains(_BINARY_EXT))
        .then(pl.lit("bin"))
        .when(p.str.contains(_SCRIPT_EXT))
        .then(pl.lit("script"))
        .when(p.str.contains(_STATIC_EXT))
        .then(pl.lit("static"))
        .when(p.str.contains(_IMAGE_EXT))
        .then(pl.lit("img"))
        .when(p.str.contains(_PAGE_EXT))
        .then(pl.lit("page"))
        .otherwise(pl.lit("other"))
    )


def web_words(df: pl.DataFrame, popular: list[str]) -> pl.DataFrame:
    """``(_row, side, doc, word)``, one word per request for its client's document."""
    joined = pl.concat_str(
        [col(df, "url.path"), col(df, "url.query")], separator="?", ignore_nulls=True
    )
    uri = pl.coalesce(
        col(df, "url.original"),
        pl.when(col(df, "url.path").is_null() & col(df, "url.query").is_null())
        .then(pl.lit(None, dtype=pl.Utf8))
        .otherwise(joined),
    ).cast(pl.Utf8)
    path = pl.coalesce(col(df, "url.path"), uri.str.extract(r"^([^?#]*)")).cast(pl.Utf8)
    ua = col(df, "user_agent.original").cast(pl.Utf8)
    uris = df.with_columns(uri.alias("_u"))["_u"]
    base = df.select(
        domain_class(registered_domain(df, "url.registered_domain", "url.domain"), popular).alias(
            "dc"
        ),
        hour(df).alias("h"),
        col(df, "http.request.method").cast(pl.Utf8).str.to_uppercase().fill_null("x").alias("m"),
        content_class(path).alias("cc"),
        # user-agent frequency over the batch (Spot: per day); a missing agent is its own bin
        pl.when(ua.is_null()).then(pl.lit("x")).otherwise(log2_bin(pl.len().over(ua))).alias("ua"),
        log2_bin(uri.str.len_chars()).alias("ul"),
        col(df, "http.response.status_code", pl.Int32).cast(pl.Utf8).fill_null("x").alias("st"),
        col(df, "source.ip").cast(pl.Utf8).alias(DOC),
    ).with_columns(entropy_bin(uris).alias("ue"))
    return base.select(
        pl.int_range(0, pl.len(), dtype=pl.Int64).alias(ROW),
        pl.lit("a").alias(SIDE),
        pl.col(DOC),
        pl.concat_str(["dc", "h", "m", "ue", "cc", "ua", "ul", "st"], separator=":").alias(WORD),
    ).filter(pl.col(DOC).is_not_null())


def popular_domains(df: pl.DataFrame, kind: str) -> list[str]:
    """The training data's popular registered domains (empty for flows)."""
    if kind == "dns":
        reg = registered_domain(df, "dns.question.registered_domain", "dns.question.name")
        who = dns_client(df)
    elif kind == "web":
        reg = registered_domain(df, "url.registered_domain", "url.domain")
        who = col(df, "source.ip").cast(pl.Utf8)
    else:
        return []
    got = df.select(reg.alias("d"), who.alias("c"))
    return top_domains(got["d"], got["c"])


def words(df: pl.DataFrame, kind: str, popular: list[str] | None = None) -> pl.DataFrame:
    """The words of the records of `df` as ``(_row, side, doc, word)`` (flows: and ``peer``)."""
    if kind not in KINDS:
        raise ValueError(f"record type must be one of {', '.join(KINDS)}, not {kind!r}")
    if df.height == 0:
        return pl.DataFrame(schema={ROW: pl.Int64, SIDE: pl.Utf8, DOC: pl.Utf8, WORD: pl.Utf8})
    if kind == "flow":
        return flow_words(df)
    if kind == "dns":
        return dns_words(df, popular or [])
    return web_words(df, popular or [])


def detect_kind(df: pl.DataFrame) -> str:
    """The record type most rows of `df` are: web, dns or flow."""

    def present(name: str) -> int:
        return int(df[name].is_not_null().sum()) if name in df.columns else 0

    counts = {
        "web": max(present("url.original"), present("url.path")),
        "dns": present("dns.question.name"),
        "flow": min(present("source.ip"), present("destination.ip")),
    }
    # a DNS or web record also has IPs: prefer the more specific type when it dominates
    for kind in ("dns", "web"):
        if counts[kind] and counts[kind] * 2 >= df.height:
            return kind
    return "flow"


#: flow words back off by dropping the hour, then the packets bin too (Spot's quantile
#: bins kept every bin populated; log2 bins leave one-off words, which LDA cannot rate)
_BACKOFF = {
    "flow": [
        (r"^([^:]*:[^:]*:[^:]*):[^:]*:", "${1}:*:"),
        (r"^([^:]*:[^:]*:[^:]*):[^:]*:([^:]*):[^:]*$", "${1}:*:${2}:*"),
    ],
}


def coarser(word: pl.Expr, kind: str, level: int) -> pl.Expr:
    """The word at back-off `level` (1, 2...): fields replaced by ``*``; itself if none."""
    steps = _BACKOFF.get(kind, [])
    if level < 1 or level > len(steps):
        return word
    pattern, repl = steps[level - 1]
    return word.str.replace(pattern, repl)


def backoff_levels(kind: str) -> int:
    return len(_BACKOFF.get(kind, []))


def back_off(w: pl.DataFrame, kind: str, min_count: int) -> pl.DataFrame:
    """Words of `w` seen fewer than `min_count` times replaced by their coarser form.

    A word takes the first level (itself, no hour, no hour nor packets) whose
    count over all of `w` reaches `min_count`, else the coarsest. Applied to
    the training corpus, so a one-off word is rated by the behaviour it is a
    variant of rather than by an arbitrary topic weight.
    """
    levels = backoff_levels(kind)
    if min_count <= 1 or levels == 0 or w.height == 0:
        return w
    names = [WORD] + [f"_w{i}" for i in range(1, levels + 1)]
    x = w.with_columns(
        [coarser(pl.col(WORD), kind, i).alias(names[i]) for i in range(1, levels + 1)]
    )
    x = x.with_columns([pl.len().over(n).alias(f"_n{i}") for i, n in enumerate(names[:-1])])
    pick = pl.col(names[-1])
    for i in range(levels - 1, -1, -1):
        pick = pl.when(pl.col(f"_n{i}") >= min_count).then(pl.col(names[i])).otherwise(pick)
    return x.with_columns(pick.alias(WORD)).select(w.columns)


def map_to_vocab(w: pl.DataFrame, kind: str, vocab: pl.Series) -> pl.DataFrame:
    """Words of `w` outside `vocab` replaced by their first coarser form inside it (scoring).

    The coarsest form is kept when none is known (it scores the floor).
    """
    levels = backoff_levels(kind)
    if levels == 0 or w.height == 0:
        return w
    known = w[WORD].is_in(vocab.implode())
    if known.all():
        return w
    idx = (~known).arg_true()
    pick = coarser(pl.col(WORD), kind, levels)
    for i in range(levels - 1, 0, -1):
        c = coarser(pl.col(WORD), kind, i)
        pick = pl.when(c.is_in(vocab.implode())).then(c).otherwise(pick)
    new = w[WORD].gather(idx).to_frame().select(pick)[WORD]
    # only the unknown rows are rewritten, in place: the frame's order is kept
    return w.with_columns(w[WORD].clone().scatter(idx, new))
