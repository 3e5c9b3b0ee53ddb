"""Text for alert messages, with attacker-controlled values neutralised.

Rule names, entity values and descriptions can come from logs, so an attacker
chooses them. Chat robots render markdown and expand mentions: a value like
`[x](http://evil) @all <script>` must show as text, not become a link, a
mention of everybody or markup. `md()` escapes for the robot markdown dialects,
`slack()` for Slack mrkdwn, `html.escape` serves e-mail.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from lightsoc.alerts.outputs.base import severity_rank

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")
# Characters that start markdown links, images, emphasis, code and tables.
_MD_SPECIAL = re.compile(r"([\\`*_~\[\]()|!{}])")
_SCHEME = re.compile(r"(?i)\bhttp(s?)://")
MAX_VALUE_CHARS = 256
SEVERITY_LABEL = {
    "informational": "INFO",
    "low": "LOW",
    "medium": "MEDIUM",
    "high": "HIGH",
    "critical": "CRITICAL",
}


def plain(value: Any, limit: int = MAX_VALUE_CHARS) -> str:
    """One line of text: control characters (newlines too) become spaces, long values cut."""
    if isinstance(value, list | tuple):
        value = ", ".join(map(str, value))
    text = _CONTROL.sub(" ", "" if value is None else str(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def defang(text: str) -> str:
    """`http://` -> `hxxp://`: clients that auto-link bare URLs cannot link it."""
    return _SCHEME.sub(r"hxxp\1://", text)


def md(value: Any, limit: int = MAX_VALUE_CHARS) -> str:
    """Escape for WeCom/DingTalk markdown: no links, emphasis, HTML tags or mentions."""
    text = defang(plain(value, limit))
    text = _MD_SPECIAL.sub(r"\\\1", text)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    # No escape exists for mentions: a full-width at sign reads the same and mentions nobody.
    return text.replace("@", "\uff20").replace("#", "\\#")


def slack(value: Any, limit: int = MAX_VALUE_CHARS) -> str:
    """Escape for Slack mrkdwn: `&`, `<`, `>` are its control characters (links, mentions)."""
    text = defang(plain(value, limit))
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    # Emphasis/code markers would only restyle text, but keep values verbatim-looking.
    return re.sub(r"([*_~`])", "\u200b\\1\u200b", text)


def title(alerts: Sequence[dict[str, Any]]) -> str:
    """`[HIGH] SSH brute force` for one alert, `lightsoc: 5 alerts (2 critical, ...)` for more."""
    if len(alerts) == 1:
        a = alerts[0]
        name = defang(plain(a.get("rule.name"), 120))
        return f"[{SEVERITY_LABEL.get(str(a.get('severity')), 'ALERT')}] {name}"
    counts: dict[str, int] = {}
    for a in alerts:
        counts[str(a.get("severity"))] = counts.get(str(a.get("severity")), 0) + 1
    parts = [f"{n} {s}" for s, n in sorted(counts.items(), key=lambda kv: -severity_rank(kv[0]))]
    return f"lightsoc: {len(alerts)} alerts ({', '.join(parts)})"


def md_title(alerts: Sequence[dict[str, Any]]) -> str:
    """`title()` for markdown: our own brackets stay, the rule name is escaped."""
    if len(alerts) == 1:
        sev = SEVERITY_LABEL.get(str(alerts[0].get("severity")), "ALERT")
        return f"[{sev}] {md(alerts[0].get('rule.name'), 120)}"
    return md(title(alerts), 200)


def by_severity(alerts: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Most severe first, then highest score: a cut-off digest keeps what matters most."""
    return sorted(alerts, key=lambda a: (-severity_rank(a.get("severity")), -_num(a.get("score"))))


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def fit(head: str, blocks: list[str], limit_bytes: int, more: str = "… and {n} more") -> str:
    """`head` then one block per alert, dropping trailing blocks to stay within `limit_bytes`."""
    sep = "\n\n"
    text = sep.join([head, *blocks])
    if len(text.encode()) <= limit_bytes:
        return text
    kept = [head]
    size = len(head.encode())
    for i, block in enumerate(blocks):
        tail = more.format(n=len(blocks) - i)
        if size + 2 * len(sep) + len(block.encode()) + len(tail.encode()) > limit_bytes:
            break
        kept.append(block)
        size += len(sep) + len(block.encode())
    if len(kept) == 1 and blocks:  # not even one alert fits whole: show the start of it
        tail = more.format(n=len(blocks) - 1) if len(blocks) > 1 else ""
        room = limit_bytes - size - 2 * len(sep) - len(tail.encode()) - 3
        if room > 0:
            kept.append(blocks[0].encode()[:room].decode(errors="ignore") + "…")
            size += len(sep) + len(kept[-1].encode())
        if not tail:
            return sep.join(kept)
    kept.append(more.format(n=len(blocks) - (len(kept) - 1)))
    text = sep.join(kept)
    if len(text.encode()) > limit_bytes:  # a huge head: cut by bytes
        text = text.encode()[: limit_bytes - 3].decode(errors="ignore") + "…"
    return text


def md_alert(a: dict[str, Any], *, wecom_colors: bool = False) -> str:
    """One alert as robot markdown (WeCom/DingTalk subset: bold, quotes, line breaks)."""
    sev = SEVERITY_LABEL.get(str(a.get("severity")), md(a.get("severity")))
    if wecom_colors:  # WeCom's markdown has <font color="warning|info|comment">
        color = "warning" if severity_rank(a.get("severity")) >= 3 else "comment"
        sev = f'<font color="{color}">{sev}</font>'
    lines = [
        f"**{sev}** **{md(a.get('rule.name'), 120)}**",
        f"> entity: {md(a.get('entity.type'), 32)} {md(a.get('entity.value'))}",
        f"> score: {md(a.get('score'), 16)}  count: {md(a.get('count'), 16)}"
        f"  status: {md(a.get('status'), 32)}",
        f"> seen: {md(a.get('first_seen'), 40)} .. {md(a.get('last_seen'), 40)}",
        f"> rule: {md(a.get('rule.id'), 80)}  alert: {md(a.get('id'), 80)}",
    ]
    if a.get("description"):
        lines.append(f"> {md(a.get('description'), 300)}")
    return "\n".join(lines)
