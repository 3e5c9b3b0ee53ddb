"""Linux netfilter log lines (iptables/nftables ``LOG``, UFW) as ECS network events.

A syslog app parser for the ``kernel`` app. The packet fields follow the
log prefix the rule set (``[UFW BLOCK]``, ``DROP-IN: ``, none): ``IN=eth0
OUT= MAC=... SRC=1.2.3.4 DST=5.6.7.8 LEN=60 ... PROTO=TCP SPT=12345
DPT=22``. ``event.action`` is the prefix in lower case with runs of other
characters as ``_`` (``ufw_block``), or ``iptables`` without one;
``event.type`` is ``denied`` when the prefix says BLOCK/DROP/REJECT/DENY,
``allowed`` for ALLOW/ACCEPT, else ``connection``. ICMP and IPv6 lines carry
no ports; their ICMP type/code go to ``labels`` with the prefix and the
interfaces (``netfilter.prefix``, ``netfilter.in``, ``netfilter.out``,
``netfilter.mac``, ``icmp.type``, ``icmp.code``). Other kernel messages get
null fields.
"""

from __future__ import annotations

import polars as pl

from lightsoc.parsers._apps import Rule, app_parser, apply_rules, json_str, nullif_empty

RULES: tuple[Rule, ...] = (
    Rule(
        ("",),
        r"^(?:\[ *[0-9]+\.[0-9]+\] ?)?(?P<prefix>.*?) ?IN=(?P<in>[^ ]*) OUT=(?P<out>[^ ]*) "
        r"(?:.*? )?SRC=(?P<src>[^ ]+) DST=(?P<dst>[^ ]+) ",
    ),
)

_LABELS = (
    ("netfilter.prefix", "_prefix"),
    ("netfilter.in", "_in"),
    ("netfilter.out", "_out"),
    ("netfilter.mac", "_mac"),
    ("icmp.type", "_itype"),
    ("icmp.code", "_icode"),
)


@app_parser("kernel")
def parse_netfilter(frame: pl.DataFrame) -> pl.DataFrame:
    """Kernel netfilter LOG lines -> source/destination/transport fields."""
    text = frame["message"]
    m = apply_rules(text, RULES).with_columns(
        text.str.extract(r" PROTO=([^ ]+)", 1).alias("_proto"),
        text.str.extract(r" SPT=([0-9]+)", 1).alias("_spt"),
        text.str.extract(r" DPT=([0-9]+)", 1).alias("_dpt"),
        text.str.extract(r" MAC=([^ ]+)", 1).alias("_mac"),
        text.str.extract(r" TYPE=([0-9]+) CODE=[0-9]+", 1).alias("_itype"),
        text.str.extract(r" TYPE=[0-9]+ CODE=([0-9]+)", 1).alias("_icode"),
    )
    ok = pl.col("_rule").is_not_null()
    prefix = nullif_empty(pl.col("prefix").str.strip_chars())
    m = m.with_columns(
        pl.when(ok).then(prefix).alias("_prefix"),
        pl.when(ok).then(nullif_empty(pl.col("in"))).alias("_in"),
        pl.when(ok).then(nullif_empty(pl.col("out"))).alias("_out"),
        *[pl.when(ok).then(pl.col(c)).alias(c) for c in ("_mac", "_itype", "_icode")],
    )
    slug = (
        pl.col("_prefix")
        .str.to_lowercase()
        .str.replace_all(r"[^a-z0-9]+", "_")
        .str.strip_chars("_")
    )
    action = pl.coalesce(nullif_empty(slug), pl.lit("iptables"))
    upper = pl.col("_prefix").str.to_uppercase().fill_null("")
    etype = (
        pl.when(upper.str.contains("BLOCK|DROP|REJECT|DENY"))
        .then(pl.lit("denied"))
        .when(upper.str.contains("ALLOW|ACCEPT"))
        .then(pl.lit("allowed"))
        .otherwise(pl.lit("connection"))
    )
    pairs = [
        pl.when(pl.col(c).is_not_null()).then(pl.lit(f'"{k}":') + json_str(pl.col(c)))
        for k, c in _LABELS
    ]
    joined = pl.concat_str(pairs, separator=",", ignore_nulls=True)
    return m.select(
        pl.when(ok).then(pl.lit("network")).alias("event.category"),
        pl.when(ok).then(etype).alias("event.type"),
        pl.when(ok).then(action).alias("event.action"),
        pl.when(ok).then(pl.col("src")).alias("source.ip"),
        pl.when(ok).then(pl.col("_spt").cast(pl.Int32, strict=False)).alias("source.port"),
        pl.when(ok).then(pl.col("dst")).alias("destination.ip"),
        pl.when(ok).then(pl.col("_dpt").cast(pl.Int32, strict=False)).alias("destination.port"),
        pl.when(ok).then(pl.col("_proto").str.to_lowercase()).alias("network.transport"),
        pl.when(ok & (joined.str.len_bytes() > 0)).then("{" + joined + "}").alias("labels"),
        pl.when(ok).then(pl.lit("iptables")).alias("event.dataset"),
        pl.when(ok).then(pl.lit("iptables")).alias("event.module"),
    )
