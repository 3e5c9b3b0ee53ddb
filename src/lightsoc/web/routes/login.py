"""/login, /logout and the language switch.

The login form carries a double-submit token (a cookie and a field that must
match), so another site cannot log a victim's browser into the attacker's
account. Failures and lockouts are audited; the client address is rate
limited before any password is hashed.
"""

# No `from __future__ import annotations`: FastAPI must evaluate the route
# signatures' `Depends(sec.require(...))`, which name this function's locals.
import hmac
import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from lightsoc.auth import LOCALES
from lightsoc.web.context import WebContext
from lightsoc.web.i18n import LANG_COOKIE
from lightsoc.web.security import SESSION_COOKIE, Principal, client_ip

LOGIN_CSRF_COOKIE = "lightsoc_login"


def safe_next(target: str | None) -> str:
    """Only a path on this site: never `//host` or `https://host` (open redirect)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    return target


def router(ctx: WebContext) -> APIRouter:
    r = APIRouter(include_in_schema=False)
    sec = ctx.security

    def login_page(request: Request, next_: str, error: str | None, status: int) -> Response:
        token = secrets.token_urlsafe(24)
        resp = ctx.render(
            request, "login.html", None, status, next=safe_next(next_), error=error, token=token
        )
        resp.set_cookie(
            LOGIN_CSRF_COOKIE,
            token,
            httponly=True,
            samesite="strict",
            secure=sec.secure_cookie(request),
            path="/login",
        )
        return resp

    @r.get("/login")
    def login_form(request: Request, next: str = "/") -> Response:  # noqa: A002
        if sec.principal(request) is not None and request.cookies.get(SESSION_COOKIE):
            return RedirectResponse(safe_next(next), 303)
        return login_page(request, next, None, 200)

    @r.post("/login")
    def login(
        request: Request,
        username: Annotated[str, Form(max_length=200)] = "",
        password: Annotated[str, Form(max_length=1024)] = "",
        next: Annotated[str, Form(max_length=2000)] = "/",  # noqa: A002
        csrf_token: Annotated[str, Form(max_length=200)] = "",
    ) -> Response:
        ip = client_ip(request)
        cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        if not cookie or not hmac.compare_digest(cookie, csrf_token):
            return login_page(request, next, "Your login form expired; please try again.", 403)
        wait = sec.login_limiter.wait(ip)
        if wait:
            ctx.audit.record(username or "-", "login_rate_limited", client_ip=ip)
            resp = login_page(request, next, "Too many attempts; wait a minute.", 429)
            resp.headers["Retry-After"] = str(int(wait) + 1)
            return resp
        result = sec.users.login(username, password, ip)
        if result.session_token is None:
            sec.login_limiter.hit(ip)
            ctx.audit.record(username or "-", f"login_{result.reason}", client_ip=ip)
            message = (
                "This account is locked for a while after too many failed logins."
                if result.reason == "locked"
                else "Wrong user name or password."
            )
            return login_page(request, next, message, 401)
        ctx.audit.record(username, "login", client_ip=ip)
        resp = RedirectResponse(safe_next(next), 303)
        resp.set_cookie(
            SESSION_COOKIE,
            result.session_token,
            max_age=int(sec.users.session_max.total_seconds()),
            httponly=True,
            samesite="strict",
            secure=sec.secure_cookie(request),
            path="/",
        )
        resp.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
        return resp

    @r.post("/logout")
    def logout(
        request: Request, who: Annotated[Principal, Depends(sec.require("viewer"))]
    ) -> Response:
        token = request.cookies.get(SESSION_COOKIE)
        if token:
            sec.users.logout(token)
            ctx.audit.record(who.actor, "logout", client_ip=client_ip(request))
        resp = RedirectResponse("/login", 303)
        resp.delete_cookie(SESSION_COOKIE, path="/")
        return resp

    @r.post("/locale")
    async def set_locale(
        request: Request,
        locale: Annotated[str, Form(max_length=20)],
        next: Annotated[str, Form(max_length=2000)] = "/",  # noqa: A002
    ) -> Response:
        """Switch language: the user's setting when logged in, a cookie before."""
        if locale not in LOCALES:
            locale = "en"
        who = sec.principal(request)
        if who is not None and who.via == "session":
            await sec.check_csrf(request, who)
            sec.users.update(who.name, locale=locale)
        resp = RedirectResponse(safe_next(next), 303)
        resp.set_cookie(LANG_COOKIE, locale, max_age=365 * 86400, samesite="lax", httponly=True)
        return resp

    return r
