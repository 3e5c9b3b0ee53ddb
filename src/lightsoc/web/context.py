"""What every page and API router is built from, and how a page is rendered.

Templates autoescape everything (log content is attacker-controlled): event
data is never marked safe. Numbers and times are formatted here, once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from lightsoc import __version__
from lightsoc.web.i18n import NAMES, request_locale, translator
from lightsoc.web.security import Principal, Security

if TYPE_CHECKING:
    from lightsoc.alerts.store import AlertStore
    from lightsoc.auth.audit import AuditLog
    from lightsoc.auth.users import UserStore
    from lightsoc.config import Config
    from lightsoc.store.base import EventStore
    from lightsoc.store.state import StateStore

TEMPLATE_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"


@dataclass(frozen=True, order=True)
class NavItem:
    order: int
    path: str
    label: str  # English; translated when shown
    role: str = "viewer"


def fmt_time(value: Any) -> str:  # noqa: ANN401 - datetimes, ISO strings or None
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def fmt_number(value: Any) -> str:  # noqa: ANN401
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"
    return str(value)


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(TEMPLATE_DIR))
    env = templates.env
    env.autoescape = True  # every template, whatever its extension
    env.filters["ts"] = fmt_time
    env.filters["num"] = fmt_number
    env.globals["version"] = __version__
    env.globals["static"] = lambda path: f"/static/{path}?v={__version__}"
    env.globals["locale_names"] = NAMES
    return templates


@dataclass
class WebContext:
    events: EventStore
    state: StateStore
    alerts: AlertStore
    users: UserStore
    audit: AuditLog
    security: Security
    live_metrics: Callable[[], dict[str, Any]] | None = None
    #: the server's configuration (None when the app runs without one, in tests)
    config: Config | None = None
    templates: Jinja2Templates = field(default_factory=make_templates)
    nav: list[NavItem] = field(default_factory=list)

    def render(
        self,
        request: Request,
        name: str,
        principal: Principal | None,
        status_code: int = 200,
        **context: Any,  # noqa: ANN401
    ) -> HTMLResponse:
        """A page (or an htmx fragment) in the caller's language."""
        locale = request_locale(request, principal.locale if principal else None)
        nav = [n for n in sorted(self.nav) if principal is not None and principal.can(n.role)]
        values = {
            "request": request,
            "user": principal,
            "locale": locale,
            "_": translator(locale),
            "nav": nav,
            "csrf": principal.csrf if principal else None,
            **context,
        }
        return self.templates.TemplateResponse(request, name, values, status_code=status_code)
