// lightsoc UI glue. No inline scripts anywhere (the CSP forbids them): pages
// mark elements with data- attributes and their own script files read them.
(function () {
  "use strict";
  const csrfMeta = document.querySelector('meta[name="csrf-token"]');
  const csrf = csrfMeta ? csrfMeta.getAttribute("content") : null;

  // Every htmx request carries the session's CSRF token.
  document.addEventListener("htmx:configRequest", function (ev) {
    if (csrf) ev.detail.headers["X-CSRF-Token"] = csrf;
  });

  // A <select data-autosubmit> submits its form when changed.
  document.addEventListener("change", function (ev) {
    const el = ev.target;
    if (el instanceof HTMLElement && el.hasAttribute("data-autosubmit") && el.form) {
      el.form.requestSubmit ? el.form.requestSubmit() : el.form.submit();
    }
  });

  /** JSON from /api/v1 with the session cookie and the CSRF token. */
  async function api(method, url, body) {
    const headers = { Accept: "application/json" };
    if (csrf) headers["X-CSRF-Token"] = csrf;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const resp = await fetch(url, {
      method: method,
      headers: headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (resp.status === 401) {
      window.location.assign("/login?next=" + encodeURIComponent(location.pathname + location.search));
      throw new Error("not logged in");
    }
    const data = resp.headers.get("content-type")?.includes("json") ? await resp.json() : null;
    if (!resp.ok) {
      const detail = data && data.detail ? data.detail : resp.statusText;
      throw new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
    }
    return data;
  }

  /** Text for the page: never innerHTML with data (log content is attacker-controlled). */
  function text(el, value) {
    el.textContent = value === null || value === undefined ? "" : String(value);
  }

  window.lightsoc = { api: api, text: text, csrf: csrf };
})();
