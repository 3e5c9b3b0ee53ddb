// Alerts list: select rows, bulk triage through POST /api/v1/alerts/bulk.
// Alert page: the triage form through POST /api/v1/alerts/{id}/status.
// Values from the server are set with textContent only (alert data is attacker-influenced).
(function () {
  "use strict";
  const ls = window.lightsoc;

  function fmt(template, n) {
    return (template || "{n}").replace("{n}", String(n));
  }

  // -- list ------------------------------------------------------------------
  const table = document.getElementById("alerts-table");
  const bar = document.getElementById("bulk-bar");
  if (table && bar) {
    const picks = () => Array.from(table.querySelectorAll("input.pick"));
    const chosen = () => picks().filter((c) => c.checked).map((c) => Number(c.value));
    const count = document.getElementById("bulk-count");
    const result = document.getElementById("bulk-result");
    const buttons = Array.from(bar.querySelectorAll("button"));
    const all = document.getElementById("select-all");

    function refresh() {
      const n = chosen().length;
      ls.text(count, fmt(count.dataset.template, n));
      buttons.forEach((b) => { b.disabled = n === 0; });
      if (all) all.checked = n > 0 && n === picks().length;
    }

    table.addEventListener("change", function (ev) {
      if (ev.target === all) picks().forEach((c) => { c.checked = all.checked; });
      refresh();
    });

    function statusBadge(status) {
      // Reuse the label the page already shows for that status, if any.
      const known = document.querySelector('.alert-status[data-status="' + CSS.escape(status) + '"]');
      const span = document.createElement("span");
      span.className = "alert-status st-" + status;
      span.dataset.status = status;
      ls.text(span, known ? known.textContent : status);
      return span;
    }

    async function bulk(body) {
      const ids = chosen();
      if (!ids.length) return;
      buttons.forEach((b) => { b.disabled = true; });
      result.classList.remove("error");
      try {
        const out = await ls.api("POST", "/api/v1/alerts/bulk", Object.assign({ ids: ids }, body));
        out.changed.forEach(function (a) {
          const row = table.querySelector('tr[data-alert-id="' + Number(a.id) + '"]');
          if (!row) return;
          const cell = row.querySelector(".js-status");
          cell.replaceChildren(statusBadge(a.status));
          ls.text(row.querySelector(".js-assignee"), a.assignee || "");
          row.classList.add("changed");
          const box = row.querySelector("input.pick");
          if (box) box.checked = false;
        });
        let msg = fmt(result.dataset.done, out.changed.length);
        if (out.errors.length) {
          msg += " · " + fmt(result.dataset.failed, out.errors.length) + ": " + out.errors[0].detail;
          result.classList.add("error");
        }
        ls.text(result, msg);
      } catch (err) {
        result.classList.add("error");
        ls.text(result, err.message);
      }
      refresh();
    }

    bar.addEventListener("click", function (ev) {
      const b = ev.target.closest("button");
      if (!b) return;
      if (b.dataset.bulkStatus) bulk({ status: b.dataset.bulkStatus });
      else if (b.dataset.bulkAssign) bulk({ assignee: b.dataset.bulkAssign });
    });
    refresh();
  }

  // -- one alert ---------------------------------------------------------------
  const form = document.getElementById("triage-form");
  if (form) {
    const result = document.getElementById("triage-result");
    form.addEventListener("submit", async function (ev) {
      ev.preventDefault();
      const data = new FormData(form);
      const assignee = String(data.get("assignee") || "").trim();
      const note = String(data.get("note") || "").trim();
      const body = { status: data.get("status") };
      if (assignee) body.assignee = assignee;
      else body.unassign = true;
      if (note) body.note = note;
      result.classList.remove("error");
      try {
        await ls.api("POST", "/api/v1/alerts/" + Number(form.dataset.alertId) + "/status", body);
        ls.text(result, result.dataset.saved);
        window.location.reload();
      } catch (err) {
        result.classList.add("error");
        ls.text(result, err.message);
      }
    });
  }
})();
