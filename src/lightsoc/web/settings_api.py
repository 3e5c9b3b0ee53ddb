"""REST API of the settings page: profile, users, tokens, audit log, outputs, retention.

Everyone manages their own profile, password and tokens; admins manage users,
every token, alert outputs and retention, and read the audit log. Every change
is audited, never with a password or a token value in it. The running config
(`alerts.outputs`, `store.retention_days`, `enrich.networks`) is read from
`app.state.config`, which `lightsoc run` sets; without it there is none.
"""

# No `from __future__ import annotations`: FastAPI evaluates the route signatures.
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, Field

from lightsoc.auth import may_create_token
from lightsoc.auth.users import MAX_PASSWORD, LastAdminError, UserError
from lightsoc.web.api import MAX_OFFSET
from lightsoc.web.security import SYSTEM_TOKEN_OWNER, Principal, RowId, client_ip

if TYPE_CHECKING:
    from lightsoc.alerts.outputs.base import Output
    from lightsoc.config import Config
    from lightsoc.web.context import WebContext

#: state-store setting that overrides `store.retention_days` (read by the maintenance loop)
RETENTION_SETTING = "retention_days"
MAX_RETENTION_DAYS = 36_500
AUDIT_PAGE = 50

Password = Annotated[str, Field(min_length=1, max_length=MAX_PASSWORD)]
Locale = Literal["en", "zh-CN"]  # lightsoc.auth.LOCALES
Role = Literal["viewer", "analyst", "admin"]  # lightsoc.auth.ROLES


class MeChange(BaseModel):
    locale: Locale | None = None
    current_password: Password | None = None
    new_password: Password | None = None


class UserNew(BaseModel):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    role: Role
    password: Password
    locale: Locale = "en"


class UserChange(BaseModel):
    role: Role | None = None
    disabled: bool | None = None
    password: Password | None = None
    locale: Locale | None = None


class TokenNew(BaseModel):
    name: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")]
    scope: Literal["read", "ingest", "admin"]


class RetentionChange(BaseModel):
    #: None: no override, the config's `store.retention_days` applies
    days: Annotated[int, Field(ge=1, le=MAX_RETENTION_DAYS)] | None


def config_of(request: Request) -> "Config | None":
    return getattr(request.app.state, "config", None)


def token_owner(ctx: "WebContext", who: Principal) -> str | None:
    """The user a caller's own tokens belong to; None for the first-start system token."""
    if who.via == "token" and who.name == SYSTEM_TOKEN_OWNER and ctx.users.get(who.name) is None:
        return None
    return who.name


def sample_alert(actor: str) -> dict[str, Any]:
    """An alert of every field, plainly marked as a test, for "send test message"."""
    now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return {
        "id": "lightsoc-test",
        "rule.id": "lightsoc-test-message",
        "rule.name": "lightsoc test message",
        "severity": "low",
        "score": 0,
        "entity.type": "host",
        "entity.value": "lightsoc",
        "first_seen": now,
        "last_seen": now,
        "count": 1,
        "status": "open",
        "assignee": None,
        "case_id": None,
        "event_ids": [],
        "description": f"Test message from lightsoc settings, sent by {actor}; no action needed.",
        "tags": ["test"],
    }


def describe_outputs(config: "Config | None") -> list[dict[str, Any]]:
    """Each configured output: name, type, minimum severity, target (no secrets)."""
    from lightsoc.alerts.outputs import build_output

    found: list[dict[str, Any]] = []
    for name, cfg in (config.alerts.outputs if config else {}).items():
        row: dict[str, Any] = {
            "name": name,
            "type": cfg.type,
            "min_severity": cfg.min_severity,
            "target": "",
            "error": None,
        }
        try:
            out = build_output(name, cfg)
        except ValueError as exc:
            row["error"] = str(exc)
        else:
            row["target"] = out.target
            out.close()
        found.append(row)
    return found


def send_test(name: str, config: "Config", actor: str) -> tuple[bool, str]:
    """Send one test alert through output `name`'s own sender: (ok, what happened)."""
    from lightsoc.alerts.outputs import build_output

    out: Output | None = None
    try:
        out = build_output(name, config.alerts.outputs[name])
        out.send([sample_alert(actor)])
    except ValueError as exc:  # bad options: the same message `lightsoc run` would give
        return False, str(exc)
    except Exception as exc:  # OutputError or a sender's bug: one line, without secrets
        text = str(exc) or type(exc).__name__
        return False, out.redact(text) if out is not None else text
    finally:
        if out is not None:
            out.close()
    return True, f"sent to {out.target or name}"


def retention_info(ctx: "WebContext", config: "Config | None") -> dict[str, Any]:
    configured = config.store.retention_days if config else None
    override = ctx.state.get_setting(RETENTION_SETTING)
    if not isinstance(override, int) or isinstance(override, bool) or override < 1:
        override = None
    return {
        "configured": configured,
        "override": override,
        "effective": override if override is not None else configured,
    }


def audit_entry(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "at": row["at"].isoformat()}


def create_settings_api_router(ctx: "WebContext") -> APIRouter:
    router = APIRouter(prefix="/api/v1")
    sec = ctx.security
    Anyone = Annotated[Principal, Depends(sec.require("viewer"))]
    Admin = Annotated[Principal, Depends(sec.require("admin"))]

    def audit(request: Request, who: Principal, action: str, target: str | None, **kw: Any) -> None:
        ctx.audit.record(who.actor, action, target, client_ip=client_ip(request), **kw)

    # -- the caller --------------------------------------------------------
    @router.patch("/me")
    def change_me(request: Request, body: MeChange, who: Anyone) -> dict[str, Any]:
        """Change your language, or your password (with the current one)."""
        user = ctx.users.get(who.name)
        if user is None:
            raise HTTPException(400, "a system token has no profile")
        if body.new_password is not None:
            ip = client_ip(request)
            if sec.login_limiter.wait(ip):  # guessing the current password is guessing a login
                raise HTTPException(429, "too many attempts; wait a minute")
            if body.current_password is None or not ctx.users.verify_password(
                who.name, body.current_password
            ):
                sec.login_limiter.hit(ip)
                audit(request, who, "password_change_failed", who.name)
                raise HTTPException(400, "the current password is wrong")
            try:
                ctx.users.update(who.name, password=body.new_password)
            except UserError as exc:
                raise HTTPException(400, str(exc)) from None
            audit(request, who, "password_change", who.name)
        if body.locale is not None and body.locale != user.locale:
            ctx.users.update(who.name, locale=body.locale)
            audit(request, who, "locale_change", who.name, locale=body.locale)
        updated = ctx.users.get(who.name)
        assert updated is not None
        return {
            **updated.as_dict(),
            "sessions_ended": body.new_password is not None,
        }

    # -- users -------------------------------------------------------------
    @router.get("/users")
    def list_users(_who: Admin) -> dict[str, Any]:
        found = [u.as_dict() for u in ctx.users.list()]
        return {"total": len(found), "users": found}

    @router.post("/users", status_code=201)
    def add_user(request: Request, body: UserNew, who: Admin) -> dict[str, Any]:
        try:
            user = ctx.users.add(body.name, body.role, body.password, body.locale)
        except UserError as exc:
            status = 409 if "exists" in str(exc) else 400
            raise HTTPException(status, str(exc)) from None
        audit(request, who, "user_add", body.name, role=body.role)
        return user.as_dict()

    @router.patch("/users/{name}")
    def change_user(request: Request, name: str, body: UserChange, who: Admin) -> dict[str, Any]:
        """Change role, enable/disable, reset the password; never the last enabled admin."""
        if ctx.users.get(name) is None:
            raise HTTPException(404, f"no user {name!r}")
        try:
            user = ctx.users.update_checked(
                name,
                role=body.role,
                disabled=body.disabled,
                password=body.password,
                locale=body.locale,
            )
        except LastAdminError as exc:
            raise HTTPException(409, f"{exc}: make another admin first") from None
        except UserError as exc:
            raise HTTPException(400, str(exc)) from None
        if body.password is not None:
            audit(request, who, "user_password", name)
        changes = {k: v for k, v in body.model_dump(exclude={"password"}).items() if v is not None}
        if changes:
            audit(request, who, "user_change", name, **changes)
        return user.as_dict()

    # -- tokens ------------------------------------------------------------
    @router.get("/tokens")
    def list_tokens(
        who: Anyone,
        all: bool = False,  # noqa: A002 - the query parameter's name
    ) -> dict[str, Any]:
        """Your tokens; an admin's `all=true`: every token (never a token value)."""
        if all:
            if not who.can("admin"):
                raise HTTPException(403, "this needs the admin role")
            found = ctx.state.list_tokens()
        else:
            owner = token_owner(ctx, who)
            found = [] if owner is None else ctx.state.list_tokens(owner)
        return {"total": len(found), "tokens": found}

    @router.post("/tokens", status_code=201)
    def create_token(request: Request, body: TokenNew, who: Anyone) -> dict[str, Any]:
        """A token for yourself, shown this once: it acts with your role, capped by scope."""
        owner = token_owner(ctx, who)
        user = ctx.users.get(owner) if owner else None
        if user is None:
            raise HTTPException(400, "only a user owns tokens (`lightsoc user token` makes others)")
        if not may_create_token(body.scope, user.role, who.role):
            raise HTTPException(403, f"you may not create a token of scope {body.scope!r}")
        token = ctx.state.create_token(body.name, body.scope, owner=user.name)
        created = next(t for t in ctx.state.list_tokens(user.name) if t["name"] == body.name)
        audit(request, who, "token_create", body.name, scope=body.scope, id=created["id"])
        return {**created, "token": token}

    @router.delete("/tokens/{token_id}", status_code=204)
    def revoke_token(request: Request, token_id: RowId, who: Anyone) -> Response:
        """Revoke one of your tokens; an admin any token."""
        owner = None if who.can("admin") else token_owner(ctx, who)
        if owner is None and not who.can("admin"):
            raise HTTPException(404, "no such token")
        if not ctx.state.revoke_token(token_id, owner):
            raise HTTPException(404, "no such token")
        audit(request, who, "token_revoke", str(token_id))
        return Response(status_code=204)

    # -- audit log ---------------------------------------------------------
    @router.get("/audit")
    def audit_log(
        _who: Admin,
        actor: Annotated[str, Query(max_length=200)] = "",
        action: Annotated[str, Query(max_length=60)] = "",
        limit: Annotated[int, Query(ge=1, le=1000)] = AUDIT_PAGE,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> dict[str, Any]:
        """Entries newest first; `action` matches a prefix (`login` finds `login_failed`)."""
        rows = ctx.audit.find(actor=actor, action=action, limit=limit, offset=offset)
        return {
            "total": ctx.audit.count(actor=actor, action=action),
            "limit": limit,
            "offset": offset,
            "entries": [audit_entry(r) for r in rows],
        }

    # -- alert outputs -----------------------------------------------------
    @router.get("/outputs")
    def list_outputs(request: Request, _who: Admin) -> dict[str, Any]:
        found = describe_outputs(config_of(request))
        return {"total": len(found), "outputs": found}

    @router.post("/outputs/{name}/test")
    def try_output(request: Request, name: str, who: Admin) -> dict[str, Any]:
        """Send a real test alert through that output now; `ok` and what happened."""
        config = config_of(request)
        if config is None or name not in config.alerts.outputs:
            raise HTTPException(404, f"no output {name!r} in the config")
        ok, message = send_test(name, config, who.actor)
        audit(request, who, "output_test", name, ok=ok, message=message[:300])
        return {"output": name, "ok": ok, "message": message}

    # -- retention ---------------------------------------------------------
    @router.get("/settings/retention")
    def get_retention(request: Request, _who: Admin) -> dict[str, Any]:
        return retention_info(ctx, config_of(request))

    @router.put("/settings/retention")
    def set_retention(request: Request, body: RetentionChange, who: Admin) -> dict[str, Any]:
        """Override `store.retention_days` (days: null removes the override)."""
        ctx.state.set_setting(RETENTION_SETTING, body.days)
        audit(request, who, "retention_set", None, days=body.days)
        return retention_info(ctx, config_of(request))

    return router
