"""End to end: Zeek's SSH password-guessing trace through softflowd, nfcapd,
nfdump and the pipeline raises a brute-force alert naming the notice's host."""

from __future__ import annotations

from eval import flows


def test_ssh_guessing_trace_is_detected_from_flows() -> None:
    case = next(c for c in flows.zeek_cases() if c.name == "ssh_sshguess.pcap")
    notes = flows.notice_sources(flows.ZEEK / "sshguess.notice.log")
    assert case.attacker == notes[0][1] and notes[0][0] == "SSH::Password_Guessing"
    res = flows.run_case(case)
    assert "error" not in res, res.get("error")
    assert res["flows"] > 0 and res["parse_failures"] == 0
    assert res["detected"], res["alerts"]
    brute = [a for a in res["alerts"] if "brute" in a["rule"].lower()]
    assert brute and all(a["entity"] == case.attacker for a in brute)
    text = flows.report({"cases": [res]}, "Zeek")
    assert case.attacker in text and "MISSED" not in text
