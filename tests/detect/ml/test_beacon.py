"""Beaconing (RITA v5 scoring): the demo day, real NjRAT C2 flows, jittered beacons,
a per-pair cross-check against the literal RITA transcription, and bad input."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from lightsoc.detect.ml import beacon, beacon_eval

STRATO = Path(__file__).resolve().parents[4] / "shared" / "data" / "flows" / "stratosphere"
DAY0 = datetime(2026, 11, 1, tzinfo=UTC).timestamp()
SUB = ("score", "ts_score", "ds_score", "hist_score", "dur_score")


def flows(ts, src="10.1.1.5", dst="203.0.113.9", sizes=None, port=443) -> pl.DataFrame:  # noqa: ANN001
    ts = np.asarray(ts, dtype=float)
    sizes = np.full(len(ts), 600) if sizes is None else np.asarray(sizes)
    return pl.DataFrame(
        {
            "@timestamp": pl.Series((ts * 1e6).astype(np.int64)).cast(pl.Datetime("us", "UTC")),
            "source.ip": [src] * len(ts),
            "destination.ip": [dst] * len(ts),
            "destination.port": pl.Series([port] * len(ts), dtype=pl.Int32),
            "source.bytes": pl.Series(sizes, dtype=pl.Int64),
        }
    )


def jittered(rng: np.random.Generator, period: float, jitter: float, miss: float = 0.0):  # noqa: ANN201
    n = int(86_400 / period)
    t = DAY0 + np.cumsum(period * rng.uniform(1 - jitter, 1 + jitter, n))
    t = t[t < DAY0 + 86_400]
    return t[rng.random(len(t)) >= miss]


def score_day(df: pl.DataFrame, **kw) -> pl.DataFrame:  # noqa: ANN003
    return beacon.score_beacons(df, window_start=DAY0, window_end=DAY0 + 86_400, **kw)


@pytest.fixture(scope="module")
def demo() -> tuple[pl.DataFrame, object]:
    return beacon_eval.demo_day()


def test_demo_day_beacon_ranks_first_and_office_stays_below(demo) -> None:  # noqa: ANN001
    events, truth = demo
    scored = beacon.score_beacons(events, "flow")
    top = scored.row(0, named=True)
    assert (top["source.ip"], top["destination.ip"]) == (truth.beacon_host, truth.beacon_ip)
    assert top["score"] >= beacon.THRESHOLD
    assert top["connections"] == truth.beacons
    assert 295 <= top["ts_median"] <= 305  # the injected period, 300 s +- 10 %
    others = scored.filter(pl.col("destination.ip") != truth.beacon_ip)
    assert (others["score"] < beacon.THRESHOLD).all()
    alerted = beacon.alerts(scored)
    assert alerted["destination.ip"].to_list() == [truth.beacon_ip]


def test_demo_day_without_outbound_filter_still_ranks_beacon_first(demo) -> None:  # noqa: ANN001
    events, truth = demo
    scored = beacon.score_beacons(events, "flow", outbound_only=False)
    assert scored.height > 1000  # office clients <-> office servers now scored too
    top2 = set(scored.head(2).select("source.ip", "destination.ip").iter_rows())
    assert top2 == {(truth.beacon_host, truth.beacon_ip), (truth.beacon_ip, truth.beacon_host)}


def test_njrat_c2_in_real_zeek_conn_log_ranks_first() -> None:
    events = beacon_eval.events_from_files([STRATO / "001-zeek-scenario-malicious" / "conn.log"])
    assert events.height > 900
    scored = beacon.score_beacons(events, "flow")
    top = scored.row(0, named=True)
    # labelled "Malicious CC" in labeled-conn.log: NjRAT to port 1177 every 9-14 s
    assert (top["source.ip"], top["destination.ip"]) == ("192.168.1.115", "41.108.179.197")
    assert top["score"] >= beacon.THRESHOLD
    # RITA's never-included subnets: IPv6 link-local -> multicast chatter is not scored
    assert not scored["destination.ip"].str.starts_with("ff02").any()


@pytest.mark.parametrize(
    ("period", "jitter", "miss"), [(60, 0.2, 0.0), (60, 0.2, 0.3), (300, 0.5, 0.0)]
)
def test_jittered_and_lossy_beacons_score_high(period: float, jitter: float, miss: float) -> None:
    rng = np.random.default_rng(5)
    t = jittered(rng, period, jitter, miss)
    scored = score_day(flows(t, sizes=600 + rng.integers(-5, 6, len(t))))
    assert scored.height == 1
    assert scored["score"][0] >= beacon.THRESHOLD
    assert abs(scored["ts_median"][0] - period) < period * 0.1


def test_human_browsing_scores_low_and_hourly_job_scores_high() -> None:
    rng = np.random.default_rng(8)
    pages = np.sort(DAY0 + 3600 + rng.uniform(0, 9 * 3600, 50))
    human = np.concatenate([p + np.cumsum(rng.exponential(0.8, 6)) for p in pages])
    cron = DAY0 + 60 + np.arange(24) * 3600 + rng.uniform(-3, 3, 24)
    df = pl.concat(
        [
            flows(human, dst="198.51.100.1", sizes=rng.lognormal(9, 1.2, len(human)).astype(int)),
            flows(cron, dst="198.51.100.2", sizes=rng.integers(900, 40_000, 24)),
        ]
    )
    scored = score_day(df).sort("destination.ip")
    assert scored["score"][0] < beacon.THRESHOLD  # bursts in office hours: no histogram score
    # an hourly update check *is* a beacon to RITA; the remedy is an allow list
    assert scored["score"][1] >= beacon.THRESHOLD
    assert scored["ds_score"][1] < scored["ts_score"][1]  # its varying sizes cost it


def test_strobe_flagged_not_scored() -> None:
    rng = np.random.default_rng(1)
    t = np.sort(DAY0 + rng.uniform(0, 86_400, 90_000))
    scored = score_day(pl.concat([flows(t), flows(jittered(rng, 60, 0.1), dst="203.0.113.1")]))
    strobe = scored.filter(pl.col("is_strobe"))
    assert strobe["destination.ip"].to_list() == ["203.0.113.9"]
    assert strobe["score"].is_null().all() and strobe["connections"][0] == 90_000
    assert scored.filter(~pl.col("is_strobe"))["score"][0] >= beacon.THRESHOLD
    assert beacon.alerts(scored).height == 2
    # scaled to the window: one hour of it is a strobe too (3600 per hour)
    burst = flows(DAY0 + np.arange(4000) * 0.9)
    hour = beacon.score_beacons(burst, window_start=DAY0, window_end=DAY0 + 3600)
    assert hour["is_strobe"].all()
    assert not score_day(burst)["is_strobe"].any()  # 4000 in a day is no strobe


def test_vectorised_scores_equal_the_per_pair_rita_transcription() -> None:
    rng = np.random.default_rng(3)
    parts = []
    for i in range(40):
        kind = i % 4
        if kind == 0:
            t = jittered(rng, rng.uniform(30, 900), rng.uniform(0, 0.6), rng.uniform(0, 0.4))
        elif kind == 1:
            t = DAY0 + rng.uniform(0, 86_400, rng.integers(4, 300))
        elif kind == 2:
            t = DAY0 + rng.uniform(0, 7200, rng.integers(4, 80))  # only a couple of hours
        else:
            t = np.repeat(DAY0 + rng.uniform(0, 86_400, 6), rng.integers(1, 4, 6))  # duplicates
        sizes = rng.integers(0, 3000, len(t)) if i % 3 else np.full(len(t), 512)
        parts.append(flows(t, dst=f"198.18.0.{i}", sizes=sizes))
    df = pl.concat(parts)
    scored = score_day(df)
    assert scored.height >= 35
    for r in scored.iter_rows(named=True):
        pair = df.filter(pl.col("destination.ip") == r["destination.ip"])
        ts = (pair["@timestamp"].dt.epoch("us") / 1e6).to_list()
        ref = beacon_eval.reference_scores(ts, pair["source.bytes"].to_list(), DAY0, DAY0 + 86_400)
        for k in SUB:
            assert r[k] == pytest.approx(ref[k], abs=1e-12), (r["destination.ip"], k)


def test_dns_and_web_kinds_key_on_domains() -> None:
    rng = np.random.default_rng(2)
    t = jittered(rng, 120, 0.1)
    base = flows(t, dst="10.0.0.53")
    dns = pl.concat(
        [
            base.with_columns(
                pl.lit("C2.Example.").alias("dns.question.name"),
                pl.lit(None, dtype=pl.Int64).alias("source.bytes"),
                pl.lit(51_000).alias("source.port"),
            ),
            # the resolver's answers (sent from port 53) must not form pairs
            base.with_columns(
                pl.col("destination.ip").alias("source.ip"),
                pl.lit("c2.example").alias("dns.question.name"),
                pl.lit(53).alias("source.port"),
            ),
        ],
        how="diagonal_relaxed",
    )
    s = score_day(dns, kind="dns")
    assert s["destination.domain"].to_list() == ["c2.example"]
    assert s["ds_score"].is_null().all()  # no sizes: weights renormalised over the rest
    assert s["score"][0] >= beacon.THRESHOLD
    web = base.with_columns(pl.lit("Updates.Example").alias("url.domain"))
    w = score_day(web, kind="web")
    assert w["destination.domain"].to_list() == ["updates.example"]
    assert w["score"][0] >= beacon.THRESHOLD


def test_weights_and_port_grouping() -> None:
    rng = np.random.default_rng(4)
    t = jittered(rng, 60, 0.1)
    df = pl.concat([flows(t[::2], port=443), flows(t[1::2], port=8443)])
    assert score_day(df).height == 1
    by_port = score_day(df, by_port=True)
    assert sorted(by_port["destination.port"].to_list()) == [443, 8443]
    only_ts = score_day(df, weights={"timestamp": 1, "datasize": 0, "histogram": 0, "duration": 0})
    assert only_ts["score"][0] == only_ts["ts_score"][0]
    with pytest.raises(ValueError, match="unknown beacon weight"):
        score_day(df, weights={"timing": 1.0})
    with pytest.raises(ValueError, match="weights must be"):
        score_day(df, weights={"timestamp": -1})
    with pytest.raises(ValueError, match="kind must be"):
        score_day(df, kind="netflow")
    with pytest.raises(ValueError, match="min_connections"):
        score_day(df, min_connections=2)
    with pytest.raises(ValueError, match="window is empty"):
        beacon.score_beacons(df, window_start=DAY0, window_end=DAY0)


def test_bad_input_never_crashes() -> None:
    cols = set(beacon.score_beacons(flows([DAY0, DAY0 + 60, DAY0 + 120, DAY0 + 180])).columns)
    assert {"score", "ts_score", "ds_score", "hist_score", "dur_score", "is_strobe"} <= cols
    # empty frame, a frame without the columns, one row
    assert beacon.score_beacons(pl.DataFrame()).height == 0
    assert beacon.score_beacons(pl.DataFrame({"x": [1]})).height == 0
    assert beacon.score_beacons(flows([DAY0])).height == 0
    # 1-3 connections, and 5 connections in 3 distinct seconds: not candidates
    few = pl.concat([flows(DAY0 + np.arange(n) * 60, dst=f"198.51.100.{n}") for n in (1, 2, 3)])
    same = flows([DAY0, DAY0, DAY0 + 0.5, DAY0 + 60, DAY0 + 120], dst="198.51.100.9")
    assert score_day(pl.concat([few, same])).height == 0
    # zero bytes, null port, IPv6, a string timestamp column
    t = DAY0 + np.arange(50) * 300.0
    v6 = flows(t, src="2001:db8::5", dst="2001:db8:ffff::1", sizes=np.zeros(50, dtype=int))
    v6 = v6.with_columns(pl.lit(None, dtype=pl.Int32).alias("destination.port"))
    s = score_day(v6, by_port=True)
    assert s["destination.ip"][0] == "2001:db8:ffff::1" and s["destination.port"][0] is None
    assert s["ds_mad_score"][0] == 0.0 and 0.0 <= s["score"][0] <= 1.0  # RITA: MAD score 0
    text = v6.with_columns(pl.col("@timestamp").dt.to_string("%Y-%m-%dT%H:%M:%SZ"))
    assert score_day(text)["score"][0] == s["score"][0]
    nulls = v6.with_columns(pl.lit(None, dtype=pl.String).alias("source.ip"))
    assert score_day(nulls).height == 0


def test_evaluate_reports_the_demo_beacon() -> None:
    res = beacon.evaluate([], None)
    assert res["demo_beacon"]["rank"] == 1
    assert res["flow"]["alerts"] == 1
    files = beacon.evaluate([STRATO / "test2-malicious.binetflow"], None)
    assert files["flow"]["pairs"] > 100 and files["flow"]["top"][0]["score"] is not None
