"""DNS tunnelling: real tunnel captures flagged, normal DNS and a busy benign hour not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from lightsoc.detect.ml import tunnel
from lightsoc.detect.ml.modelfile import ModelError

DATA = Path(__file__).resolve().parents[4] / "shared" / "data"
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def events(names: list[str], qtype: str = "A", ip: str = "10.0.0.5", step_s: float = 10.0):
    return pl.DataFrame(
        {
            "@timestamp": [T0 + timedelta(seconds=i * step_s) for i in range(len(names))],
            "source.ip": [ip] * len(names),
            "dns.question.name": names,
            "dns.question.type": [qtype] * len(names),
            "dns.response_code": ["NOERROR"] * len(names),
        }
    )


@pytest.mark.parametrize(
    ("capture", "domain"),
    [("dns/tunnel/iodine_elastic.pcap", "pirate.sea"), ("dns/tunnel/dnscat2.pcap", "biillpi.com")],
)
def test_tunnel_captures_flag_their_tunnel_domain_only(capture: str, domain: str) -> None:
    scored = tunnel.score_window(tunnel.read_capture(DATA / capture))
    flagged = scored.filter(pl.col("is_tunnel"))
    assert flagged["domain"].to_list() == [domain]
    row = flagged.row(0, named=True)
    assert row["payload_type_share"] == 1.0 and row["mean_sub_len"] > 30
    assert 0.5 <= row["score"] <= 1.0


def test_iodine_names_the_enricher_rejects_still_count_for_their_domain() -> None:
    ev = tunnel.read_capture(DATA / "dns/tunnel/iodine_elastic.pcap")
    assert ev["dns.question.registered_domain"].null_count() > 0  # escaped binary labels
    row = tunnel.score_window(ev).row(0, named=True)
    assert row["domain"] == "pirate.sea" and row["queries"] == ev.height


@pytest.mark.parametrize("capture", tunnel.NORMAL_CAPTURES)
def test_normal_captures_flag_nothing(capture: str) -> None:
    ev = tunnel.read_capture(DATA / capture)
    assert ev.height > 0
    scored = tunnel.score_window(ev)
    assert scored.height > 0 and not scored["is_tunnel"].any()


@pytest.mark.parametrize("clients", [30, 1])
def test_busy_benign_resolver_hour_stays_under_the_threshold(clients: int) -> None:
    benign = pl.read_csv(DATA / "dns/dga_labeled.csv").filter(pl.col("label") == "benign")
    ev = tunnel.busy_resolver_events(benign["domain"].to_list(), clients=clients)
    scored = tunnel.score_window(ev)
    assert scored.height > 100 and not scored["is_tunnel"].any()
    assert scored["score"].max() < 0.4  # CDN names: many, but short and typed A/AAAA
    # googlevideo.com gathers hundreds of random-looking names per client; (cloudfront.net
    # does not: it is a PSL private suffix, each distribution its own registered domain)
    assert scored.filter(pl.col("domain") == "googlevideo.com")["distinct_subdomains"].min() > 40


def test_rule_needs_volume_and_long_random_names() -> None:
    hexes = [f"{i:04x}9f3c1a7be2d84f6a0c5e1b3d7f9a2c4e6b8d0f1a3.example.net" for i in range(20)]
    assert tunnel.score_window(events(hexes, "TXT"))["is_tunnel"].to_list() == [True]
    # the same two names again and again: no volume of distinct subdomains
    assert not tunnel.score_window(events(hexes[:2] * 10, "TXT"))["is_tunnel"].any()
    words = [f"{w}.example.net" for w in ("www", "mail", "api", "cdn", "img", "m") * 4]
    assert not tunnel.score_window(events(words))["is_tunnel"].any()


def test_windows_and_clients_are_separate_groups() -> None:
    hexes = [f"{i:04x}9f3c1a7be2d84f6a0c5e1b3d7f9a2c4e6b8d0f1a3.example.net" for i in range(40)]
    ev = events(hexes, "NULL", step_s=180.0)  # two hours
    scored = tunnel.score_window(ev, window=timedelta(hours=1))
    assert scored.height == 2 and scored["queries"].sum() == 40
    two = pl.concat([events(hexes[:20], "NULL"), events(hexes[20:], "NULL", ip="10.0.0.6")])
    assert sorted(tunnel.score_window(two)["source.ip"].to_list()) == ["10.0.0.5", "10.0.0.6"]


def test_bad_input_is_handled() -> None:
    empty = tunnel.score_window(pl.DataFrame())
    assert empty.height == 0 and "score" in empty.columns
    odd = events(["", "localhost", "münchen.de", "xn--mnchen-3ya.de", "a" * 300 + ".com"])
    odd = odd.with_columns(
        pl.Series(
            "dns.question.name",
            [None, "localhost", "münchen.de", "xn--mnchen-3ya.de", "a" * 300 + ".com"],
        )
    )
    scored = tunnel.score_window(odd.drop("source.ip", "dns.question.type"))
    assert not scored["is_tunnel"].any() and scored["score"].is_between(0, 1).all()
    with pytest.raises(ModelError, match="@timestamp"):
        tunnel.score_window(odd.drop("@timestamp"))
    with pytest.raises(ModelError):
        tunnel.read_capture(DATA / "no-such.pcap")


def test_evaluate_reports_every_capture() -> None:
    res = tunnel.evaluate([])
    assert res["tunnels_flagged"] == res["tunnel_captures"] == 2
    assert res["false_positive_windows"] == 0
    kinds = {c["capture"]: c["kind"] for c in res["captures"]}
    assert kinds["dnscat2.pcap"] == "tunnel" and kinds["dns.pcap"] == "normal"
    assert all(c["top"] for c in res["captures"])
