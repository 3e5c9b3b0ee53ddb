"""Cases: an investigation's alerts, events, entities, narrative and comments.

`store.CaseStore` keeps them in the state store. The helpers here turn an
event into what a case keeps of it (a one-line summary, the entities it
names) and render a narrative's markdown safely: raw HTML is never passed
through and links go only to http(s) or relative targets. Event fields are
attacker-controlled; everything here treats them as text.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from markdown_it import MarkdownIt

SUMMARY_MAX = 300
ENTITY_KINDS = ("ip", "host", "user", "domain")
#: ECS fields whose values become a case's entities, and as which kind.
ENTITY_FIELDS = (
    ("source.ip", "ip"),
    ("destination.ip", "ip"),
    ("host.name", "host"),
    ("user.name", "user"),
)
#: Fields the summary and the entities need: the only ones read from the store.
EVENT_FIELDS = (
    "@timestamp",
    "event.id",
    "event.dataset",
    "event.action",
    "event.original",
    "message",
    "http.request.method",
    "url.original",
    "http.response.status_code",
    "dns.question.name",
    "dns.question.type",
    "dns.response_code",
    "source.port",
    "destination.port",
    "network.transport",
    *(f for f, _ in ENTITY_FIELDS),
)


def _clip(text: str, size: int = SUMMARY_MAX) -> str:
    text = " ".join(text.split())  # one line: log lines may carry newlines
    return text if len(text) <= size else text[: size - 1] + "…"


def event_summary(event: Mapping[str, Any]) -> str:
    """One line that says what the event was, for the storyboard."""
    get = event.get
    if get("url.original"):
        parts = [get("http.request.method") or "", str(get("url.original"))]
        if get("http.response.status_code") is not None:
            parts.append(f"→ {get('http.response.status_code')}")
        text = " ".join(p for p in parts if p)
    elif get("dns.question.name"):
        text = f"{get('dns.question.type') or 'DNS'} {get('dns.question.name')}"
        if get("dns.response_code"):
            text += f" → {get('dns.response_code')}"
    elif get("message"):
        text = str(get("message"))
    elif get("source.ip") and get("destination.ip") and not get("event.original"):
        src = f"{get('source.ip')}:{get('source.port') or ''}".rstrip(":")
        dst = f"{get('destination.ip')}:{get('destination.port') or ''}".rstrip(":")
        text = f"{src} → {dst} {get('network.transport') or ''}"
    else:
        text = str(get("event.original") or get("event.action") or get("event.id") or "")
    who = get("source.ip")
    if who and str(who) not in text:
        text = f"{who}: {text}"
    return _clip(text)


def event_entities(event: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(kind, value) pairs the event names: its addresses, host and user."""
    found = []
    for field, kind in ENTITY_FIELDS:
        value = event.get(field)
        if value not in (None, "", "-"):
            found.append((kind, str(value)[:300]))
    return found


def entity_kind(value: str) -> str:
    """A best guess of what an entity is: an IP, a domain (has a dot) or a user."""
    try:
        ipaddress.ip_address(value)
        return "ip"
    except ValueError:
        pass
    return "domain" if "." in value.strip(".") else "user"


def unique(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Pairs in first-seen order without repeats."""
    return list(dict.fromkeys(pairs))


# -- narrative markdown ----------------------------------------------------

_SAFE_SCHEMES = ("http:", "https:")


def _safe_link(url: str) -> bool:
    """Only http(s) and relative targets: never javascript:, data:, vbscript:, ..."""
    target = url.strip()
    lowered = "".join(target.split()).lower()
    if lowered.startswith("//") or lowered.startswith("\\"):
        return False  # protocol-relative: another site pretending to be relative
    if lowered.startswith(_SAFE_SCHEMES):
        return True
    head = lowered.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    return ":" not in head  # no scheme at all: a relative path


def _markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False})
    md.disable("image")  # the CSP allows no outside images; an image is a link here
    md.validateLink = _safe_link  # type: ignore[method-assign]

    def link_open(renderer: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:  # noqa: ANN401
        tokens[idx].attrSet("rel", "noopener noreferrer nofollow")
        return str(renderer.renderToken(tokens, idx, options, env))

    md.add_render_rule("link_open", link_open)
    return md


_MD = _markdown()


def render_markdown(text: str) -> str:
    """The narrative as HTML: CommonMark without raw HTML, images or unsafe links."""
    return _MD.render(text or "")
