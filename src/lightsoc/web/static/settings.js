// Settings page: every form with data-api is sent to /api/v1 as JSON.
// data-method: the HTTP method; data-then: what follows success
//   reload  - reload the page (the tables are rendered by the server)
//   saved   - say "Saved." next to the form and clear it
//   login   - go to the login page (a new password ended every session)
//   token   - show the new token value once (never stored by the page)
//   result  - show the API's {ok, message} (output test)
// Inputs: data-type="int" (empty -> null) or "bool"; data-same-as="FIELD" must equal
// that field and is not sent. Texts are set with textContent only.
(function () {
  "use strict";
  const root = document.querySelector(".settings");
  if (!root) return;
  const lightsoc = window.lightsoc;

  function fields(form) {
    const body = {};
    for (const el of form.elements) {
      if (!el.name || el.disabled || el.hasAttribute("data-same-as")) continue;
      const type = el.getAttribute("data-type");
      if (type === "int") body[el.name] = el.value === "" ? null : parseInt(el.value, 10);
      else if (type === "bool") body[el.name] = el.value === "true";
      else body[el.name] = el.value;
    }
    return body;
  }

  function mismatch(form) {
    for (const el of form.querySelectorAll("[data-same-as]")) {
      const other = form.elements.namedItem(el.getAttribute("data-same-as"));
      if (other && other.value !== el.value) return true;
    }
    return false;
  }

  function say(form, message, ok) {
    const out = form.querySelector("output.msg");
    if (!out) return;
    out.classList.toggle("error", !ok);
    out.classList.toggle("ok", ok);
    lightsoc.text(out, message);
  }

  function showToken(form, data) {
    const box = form.parentElement.querySelector(".new-token");
    if (!box) return;
    lightsoc.text(box.querySelector(".token-value"), data.token);
    box.hidden = false;
    form.reset();
  }

  async function submit(ev) {
    const form = ev.target;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-api")) return;
    ev.preventDefault();
    if (mismatch(form)) {
      say(form, root.getAttribute("data-mismatch"), false);
      return;
    }
    const method = form.getAttribute("data-method") || "POST";
    const then = form.getAttribute("data-then") || "reload";
    const button = form.querySelector("button[type=submit]");
    if (button) button.disabled = true;
    say(form, "", true);
    try {
      const data = await lightsoc.api(method, form.getAttribute("data-api"),
        method === "DELETE" ? undefined : fields(form));
      if (then === "reload") {
        window.location.reload();
      } else if (then === "login") {
        window.location.assign("/login?next=" + encodeURIComponent("/settings"));
      } else if (then === "token") {
        showToken(form, data);
      } else if (then === "result") {
        const label = form.getAttribute(data.ok ? "data-ok" : "data-failed");
        say(form, label + " " + data.message, data.ok);
      } else {
        form.reset();
        say(form, root.getAttribute("data-saved"), true);
      }
    } catch (err) {
      say(form, err.message, false);
    } finally {
      if (button) button.disabled = false;
    }
  }

  document.addEventListener("submit", submit);
})();
