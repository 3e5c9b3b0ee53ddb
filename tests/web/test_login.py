"""Login, sessions, CSRF, lockout and security headers on a real server."""

from __future__ import annotations

import httpx

from tests.web.ui_server import PASSWORDS, UiServer, subprocess_input


def test_pages_redirect_to_login_and_api_answers_problem_json(ui_server: UiServer) -> None:
    page = httpx.get(f"{ui_server.url}/search?q=a", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=%2Fsearch%3Fq%3Da"
    api = httpx.get(f"{ui_server.url}/api/v1/search")
    assert api.status_code == 401
    assert api.headers["content-type"] == "application/problem+json"
    assert api.json()["status"] == 401


def test_login_page_has_strict_headers_and_no_es_header(ui_server: UiServer) -> None:
    resp = httpx.get(f"{ui_server.url}/login")
    csp = resp.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "unsafe" not in csp
    assert "frame-ancestors 'none'" in csp
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert resp.headers["cache-control"] == "no-store"
    assert "x-elastic-product" not in resp.headers
    assert 'name="password" type="password"' in resp.text


def test_login_session_me_and_logout(ui_server: UiServer) -> None:
    client = ui_server.login("ana")
    me = client.get("/api/v1/me").json()
    assert (me["name"], me["role"], me["via"]) == ("ana", "analyst", "session")
    cookie = next(c for c in client.cookies.jar if c.name == "lightsoc_session")
    assert cookie.has_nonstandard_attr("HttpOnly")
    assert cookie.get_nonstandard_attr("SameSite") in ("strict", "Strict")
    # a state change with the cookie but without the CSRF token is refused
    del client.headers["X-CSRF-Token"]
    assert client.post("/logout").status_code == 403
    out = client.post("/logout", headers={"X-CSRF-Token": client.csrf})
    assert out.status_code == 303
    assert client.get("/api/v1/me").status_code == 401


def test_wrong_password_is_refused_and_audited_and_open_redirects_are_not_followed(
    ui_server: UiServer,
) -> None:
    client = httpx.Client(base_url=ui_server.url)
    resp = ui_server.post_login(client, "vic", "not-the-password")
    assert resp.status_code == 401
    assert "Wrong user name or password." in resp.text
    good = client.get("/login?next=//evil.example/x")
    assert 'name="next" value="/"' in good.text
    audit = ui_server.token_client().get("/api/v1/audit", params={"action": "login_"})
    if audit.status_code == 200:  # the settings page's API, once present
        assert any(e["actor"] == "vic" for e in audit.json()["entries"])


def test_five_failures_lock_the_account_even_with_the_right_password(ui_server: UiServer) -> None:
    add = subprocess_input(
        ["user", "add", "lock-me", "--role", "viewer", "--data-dir", str(ui_server.data_dir)],
        "lock-me-password-1",
    )
    assert add.returncode == 0, add.stderr
    client = httpx.Client(base_url=ui_server.url)
    codes = [ui_server.post_login(client, "lock-me", f"wrong-{i}").status_code for i in range(5)]
    assert codes == [401] * 5
    locked = ui_server.post_login(client, "lock-me", "lock-me-password-1")
    assert locked.status_code == 401 and "locked" in locked.text


def test_login_form_needs_its_double_submit_token(ui_server: UiServer) -> None:
    resp = httpx.post(
        f"{ui_server.url}/login",
        data={"username": "adm", "password": PASSWORDS["adm"], "csrf_token": "forged"},
    )
    assert resp.status_code == 403
    assert "lightsoc_session" not in resp.cookies


def test_tokens_act_with_their_scope(ui_server: UiServer) -> None:
    read = subprocess_input(["user", "token", "--data-dir", str(ui_server.data_dir)], "")
    token = read.stdout.strip()
    client = ui_server.token_client(token)
    assert client.get("/api/v1/me").json()["role"] == "viewer"
    # a bearer token needs no CSRF token, but a read token cannot triage
    change = client.post("/api/v1/alerts/1/status", json={"status": "acknowledged"})
    assert change.status_code == 403
    assert change.json()["detail"] == "this needs the analyst role"


def test_language_switch_before_login(ui_server: UiServer) -> None:
    client = httpx.Client(base_url=ui_server.url)
    resp = client.post("/locale", data={"locale": "zh-CN", "next": "/login"})
    assert resp.status_code == 303
    assert "登录" in client.get("/login").text
    assert (
        "登录"
        in httpx.get(f"{ui_server.url}/login", headers={"Accept-Language": "zh-CN,zh;q=0.9"}).text
    )
