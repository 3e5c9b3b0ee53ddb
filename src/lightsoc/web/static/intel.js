// /intel: upload and remove feeds, add and remove allow-list entries (admin).
// Everything goes through /api/v1; messages are set with textContent only.
(function () {
  "use strict";
  const ls = window.lightsoc;

  function say(id, message, isError) {
    const el = document.getElementById(id);
    if (!el) return;
    ls.text(el, message);
    el.classList.toggle("error", Boolean(isError));
    el.classList.toggle("ok", !isError);
  }

  // A destructive button asks once more by changing its own label (no dialogs).
  function confirmed(button) {
    if (button.dataset.armed === "1") return true;
    button.dataset.armed = "1";
    button.dataset.label = button.textContent;
    ls.text(button, button.dataset.confirm || "?");
    setTimeout(function () {
      button.dataset.armed = "";
      ls.text(button, button.dataset.label);
    }, 4000);
    return false;
  }

  async function upload(form) {
    const file = form.querySelector('input[type="file"]');
    const max = Number(file.dataset.maxBytes || 0);
    if (file.files.length && max && file.files[0].size > max) {
      say("upload-status", file.dataset.tooBig, true);
      return;
    }
    const button = form.querySelector('button[type="submit"]');
    button.disabled = true;
    say("upload-status", "…", false);
    try {
      const body = new FormData(form);
      body.delete("csrf_token"); // the header carries it
      const resp = await fetch("/api/v1/intel/feeds", {
        method: "POST",
        headers: { Accept: "application/json", "X-CSRF-Token": ls.csrf || "" },
        credentials: "same-origin",
        body: body,
      });
      const data = resp.headers.get("content-type")?.includes("json") ? await resp.json() : null;
      if (!resp.ok) {
        const detail = data && data.detail ? data.detail : resp.statusText;
        throw new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
      }
      const status = document.getElementById("upload-status");
      say("upload-status", status.dataset.done.replace("{n}", String(data.stored)), false);
      window.location.reload();
    } catch (err) {
      say("upload-status", err.message, true);
    } finally {
      button.disabled = false;
    }
  }

  async function addAllow(form) {
    const data = new FormData(form);
    const comment = String(data.get("comment") || "").trim();
    try {
      await ls.api("POST", "/api/v1/allowlist", {
        field: String(data.get("field") || "").trim(),
        value: String(data.get("value") || "").trim(),
        comment: comment || null,
      });
      window.location.reload();
    } catch (err) {
      say("allow-status", err.message, true);
    }
  }

  document.addEventListener("submit", function (ev) {
    const form = ev.target;
    if (!(form instanceof HTMLFormElement)) return;
    if (form.id === "upload-form") {
      ev.preventDefault();
      upload(form);
    } else if (form.id === "allow-form") {
      ev.preventDefault();
      addAllow(form);
    }
  });

  document.addEventListener("click", async function (ev) {
    const button = ev.target instanceof Element ? ev.target.closest("button") : null;
    if (!button) return;
    let url = null;
    let statusId = null;
    if (button.dataset.removeFeed !== undefined) {
      url = "/api/v1/intel/feeds/" + encodeURIComponent(button.dataset.removeFeed);
      statusId = "feed-status";
    } else if (button.dataset.removeAllow !== undefined) {
      url = "/api/v1/allowlist/" + encodeURIComponent(button.dataset.removeAllow);
      statusId = "allow-status";
    }
    if (!url || !confirmed(button)) return;
    button.disabled = true;
    try {
      await ls.api("DELETE", url);
      window.location.reload();
    } catch (err) {
      say(statusId, err.message, true);
      button.disabled = false;
    }
  });
})();
