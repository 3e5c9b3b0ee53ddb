"""Rule changes reach a running pipeline without a restart (`detect.reload`).

The end-to-end tests run a real `lightsoc run` tailing an nginx access log
the test appends to, change rules the ways the Rules page and the CLI do
(simple rule added, built-in Sigma rule switched off, Sigma file dropped into
`<data_dir>/rules`), and watch new events get flagged and alerted, or not.
The unit tests drive `ReloadingRuleSet` over a small state store.
"""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest

from lightsoc.config import Config
from lightsoc.detect.reload import ReloadingRuleSet
from lightsoc.store.state import StateStore
from lightsoc.store.state_rule_flags import RuleFlags, rule_meta
from lightsoc.store.state_rules import RulesStore
from tests.helpers import LightsocServer, cli, wait_until, write_config

SQLI_ID = "6b1d5e2a-4c1f-4f0e-9a51-0b7f0c7e5a01"  # rules/web/web_sqli_keywords.yml
TRAVERSAL_ID = "1f3e7c55-8a2d-4a0b-b1c4-2d6e9b7f3a02"  # rules/web/web_path_traversal.yml
SQLI_QUERY = "id=1%20UNION%20SELECT%20password%20FROM%20users"
#: the pipeline checks for rule changes every 10 s; a change must show well within this
RELOAD_WAIT = 60.0


def sigma_rule(
    rid: str, needle: str, logsource: str = "category: webserver", field: str = "cs-uri-query"
) -> str:
    return f"""title: Reload Probe {needle}
id: {rid}
status: experimental
logsource:
    {logsource}
detection:
    selection:
        {field}|contains: '{needle}'
    condition: selection
level: critical
"""


class Tailed:
    """The running server and the access log it tails."""

    def __init__(self, server: LightsocServer, log: Path, config: Path) -> None:
        self.server = server
        self.log = log
        self.config = config
        self.read = server.read_token()
        assert server.admin_token, server.output
        self.admin = server.admin_token
        self._n = itertools.count()

    def append(self, target: str, ip: str = "198.51.100.7") -> str:
        """Log a GET of `target` (now); returns the unique marker put in its path."""
        marker = f"m{uuid.uuid4().hex[:12]}"
        ts = datetime.now(UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")
        path, _, query = target.partition("?")
        line = (
            f'{ip} - - [{ts}] "GET {path}/{marker}{"?" + query if query else ""} HTTP/1.1" '
            f'200 512 "-" "Mozilla/5.0 (reload test {next(self._n)})"\n'
        )
        with self.log.open("a") as fh:
            fh.write(line)
        return marker

    def event(self, marker: str) -> dict[str, Any] | None:
        resp = httpx.get(
            f"{self.server.url}/api/v1/search",
            params={"q": f"url.original:*{marker}*", "since": "all", "limit": 10},
            headers={"Authorization": f"Bearer {self.read}"},
            timeout=30,
        )
        assert resp.status_code == 200, resp.text
        events = resp.json()["events"]
        assert len(events) <= 1, events
        return events[0] if events else None

    def rule_ids(self, target: str, ip: str = "198.51.100.7") -> list[str]:
        """Log a request, wait for its event to be stored, return the rules that flagged it."""
        marker = self.append(target, ip)
        ev = wait_until(lambda: self.event(marker), 30, f"event {marker} stored")
        return list(ev.get("rule.id") or [])

    def flagged_soon(self, target: str, rule_id: str, ip: str = "198.51.100.7") -> None:
        """New requests are flagged by `rule_id` within the reload wait."""
        wait_until(
            lambda: rule_id in self.rule_ids(target, ip),
            RELOAD_WAIT,
            f"{target} flagged by {rule_id}\n{self.server.output[-3000:]}",
            interval=0.5,
        )

    def alerts(self, rule_id: str, entity: str | None = None) -> int:
        params = {"rule": rule_id, "since": "24h", **({"entity": entity} if entity else {})}
        resp = httpx.get(
            f"{self.server.url}/api/v1/alerts",
            params=params,
            headers={"Authorization": f"Bearer {self.admin}"},
            timeout=30,
        )
        assert resp.status_code == 200, resp.text
        return int(resp.json()["total"])


@pytest.fixture(scope="module")
def tailed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tailed]:
    root = tmp_path_factory.mktemp("reload")
    log = root / "access.log"
    log.write_text("")
    config = write_config(
        root / "lightsoc.yml",
        {"web": {"type": "file", "paths": [str(log)], "format": "nginx_combined"}},
        data_dir=root / "data",
    )
    server = LightsocServer(["--config", config], cwd=root, data_dir=root / "data")
    try:
        server.start()
        yield Tailed(server, log, config)
    finally:
        server.ensure_stopped()


def test_simple_rule_added_from_the_cli_flags_new_events(tailed: Tailed) -> None:
    needle = f"probe{uuid.uuid4().hex[:8]}"
    before = tailed.rule_ids(f"/{needle}")
    assert not any(r.startswith("db:") for r in before)
    res = cli(
        "rules", "add", "--name", f"reload {needle}", "--field", "url.original",
        "--contains", needle, "--severity", "high", "--config", tailed.config,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    m = re.search(r"added simple rule (\d+)", res.stdout)
    assert m, res.stdout
    rid = f"db:{m.group(1)}"
    tailed.flagged_soon(f"/{needle}", rid, ip="198.51.100.21")
    # its events raise an alert with the rule's severity, on the flagged address
    wait_until(lambda: tailed.alerts(rid, "198.51.100.21"), 30, f"an alert of {rid}")
    resp = httpx.get(
        f"{tailed.server.url}/api/v1/alerts",
        params={"rule": rid, "since": "24h"},
        headers={"Authorization": f"Bearer {tailed.admin}"},
        timeout=30,
    )
    [alert] = resp.json()["alerts"]
    assert alert["severity"] == "high" and alert["entity.value"] == "198.51.100.21"


def test_disabled_builtin_sigma_rule_stops_flagging_and_alerting(tailed: Tailed) -> None:
    # the built-in SQLi rule runs at start-up
    tailed.flagged_soon(f"/app?{SQLI_QUERY}", SQLI_ID, ip="198.51.100.31")
    wait_until(lambda: tailed.alerts(SQLI_ID, "198.51.100.31"), 30, "the SQLi alert")
    state = StateStore.for_data_dir(tailed.server.data_dir)
    try:
        RuleFlags(state).set_enabled(SQLI_ID, False, "reload-test")
    finally:
        state.close()
    wait_until(
        lambda: SQLI_ID not in tailed.rule_ids(f"/app?{SQLI_QUERY}", ip="198.51.100.32"),
        RELOAD_WAIT,
        "SQLi requests no longer flagged",
        interval=0.5,
    )
    # from now on every SQLi request passes unflagged; a traversal from the same address
    # still alerts, and once its alert is there no SQLi alert was raised before it
    for _ in range(3):
        assert SQLI_ID not in tailed.rule_ids(f"/app?{SQLI_QUERY}", ip="198.51.100.33")
    assert TRAVERSAL_ID in tailed.rule_ids("/view?file=../../etc/passwd", ip="198.51.100.33")
    wait_until(lambda: tailed.alerts(TRAVERSAL_ID, "198.51.100.33"), 30, "the traversal alert")
    assert tailed.alerts(SQLI_ID, "198.51.100.33") == 0
    assert tailed.alerts(SQLI_ID, "198.51.100.31") == 1  # the alert raised before stays


def test_sigma_file_dropped_into_the_data_dir_is_picked_up(tailed: Tailed) -> None:
    needle = f"drop{uuid.uuid4().hex[:8]}"
    rid = str(uuid.uuid4())
    assert rid not in tailed.rule_ids(f"/p?q={needle}")
    rules = tailed.server.data_dir / "rules"
    rules.mkdir(exist_ok=True)
    tmp = rules / f"{needle}.tmp"
    tmp.write_text(sigma_rule(rid, needle))
    tmp.replace(rules / f"{needle}.yml")
    tailed.flagged_soon(f"/p?q={needle}", rid, ip="198.51.100.41")
    wait_until(lambda: tailed.alerts(rid, "198.51.100.41"), 30, f"an alert of {rid}")


# -- the wrapper on its own -------------------------------------------------------------
#: a rule on every event (the `lightsoc` log source, ECS names), as simple rules are
ANY_EVENT = ("product: lightsoc", "url.original")
DF = pl.DataFrame({"url.original": ["/a/.env", "/ok", "/b?q=needle42"]})


def flagged(rs: ReloadingRuleSet) -> list[Any]:
    """`rule.name` per row of DF (a batch nothing matched comes back without the column)."""
    out = rs.detect(DF)
    return out["rule.name"].to_list() if "rule.name" in out.columns else [None] * DF.height


@pytest.fixture
def state(tmp_path: Path) -> Iterator[StateStore]:
    s = StateStore.for_data_dir(tmp_path)
    try:
        yield s
    finally:
        s.close()


def test_wrapper_swaps_in_the_background_and_updates_levels(
    tmp_path: Path, state: StateStore
) -> None:
    config = Config(detect={"rules": []})
    rs = ReloadingRuleSet(config, tmp_path, state, reload_seconds=0.05)
    try:
        assert len(rs) == 0 and flagged(rs) == [None, None, None]
        levels: dict[str, str] = {"ml-x": "low"}
        tags: dict[str, list[str]] = {}
        rs.follow(levels, tags)
        store = RulesStore(state)
        assert store.version() == 0
        rid = store.add("env file", "url.original", "contains", ".env", "critical")
        assert store.version() == 1
        wait_until(lambda: len(rs) == 1, 10, "the simple rule loaded")
        assert flagged(rs) == [["env file"], None, None]
        assert levels == {"ml-x": "low", f"db:{rid}": "critical"} and tags[f"db:{rid}"] == []
        assert rs.fields == {"url.original"} and [r.id for r in rs.rules] == [f"db:{rid}"]
        store.set_enabled("env file", False)
        assert store.version() == 2
        wait_until(lambda: len(rs) == 0, 10, "the simple rule unloaded")
        assert flagged(rs) == [None, None, None]
        assert levels[f"db:{rid}"] == "critical"  # kept for events flagged just before
        assert rs.reloads == 2 and rs.errors == 0
    finally:
        rs.close()


def test_broken_rule_file_keeps_the_old_set(tmp_path: Path, state: StateStore) -> None:
    config = Config(detect={"rules": []})
    rules = tmp_path / "rules"
    rules.mkdir()
    rid = str(uuid.uuid4())
    rs = ReloadingRuleSet(config, tmp_path, state, background=False)
    assert rs.check() is False and len(rs) == 0  # nothing changed
    (rules / "probe.yml").write_text(sigma_rule(rid, "needle42", *ANY_EVENT))
    assert rs.check() is True
    assert [r.id for r in rs.rules] == [rid]
    assert flagged(rs) == [None, None, ["Reload Probe needle42"]]
    old = rs.current
    # saved broken: the rule that ran keeps running, and the same breakage is not retried
    (rules / "probe.yml").write_text("title: half a rule\ndetection: [\n")
    assert rs.check() is False and rs.current is old and rs.errors == 1
    assert rs.check() is False and rs.errors == 1
    assert flagged(rs) == [None, None, ["Reload Probe needle42"]]
    # flags are read at every rebuild: switching the rule off applies once the file is fixed
    RuleFlags(state).set_enabled(rid, False, "test")
    assert rs.check() is False and rs.current is old and rs.errors == 2
    (rules / "probe.yml").write_text(sigma_rule(rid, "needle42", *ANY_EVENT))
    assert rs.check() is True and len(rs) == 0
    RuleFlags(state).set_enabled(rid, True, "test")
    assert rs.check() is True and [r.id for r in rs.rules] == [rid]
    # a store that cannot be read: the rules in use stay, and the next check retries
    rule_meta.drop(state.engine)
    assert rs.check() is False and rs.errors == 3 and [r.id for r in rs.rules] == [rid]
    assert rs.check() is False and rs.errors == 4
