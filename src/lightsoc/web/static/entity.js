// Entity page: the merged timeline of events and alerts, newest first, from
// GET /api/v1/entities/{value}/timeline; dataset chips filter it, "Load older" pages on.
// Event content is attacker-controlled: rows are built with textContent only.
(function () {
  "use strict";
  const ls = window.lightsoc;
  const panel = document.getElementById("timeline-panel");
  if (!panel) return;
  const body = document.querySelector("#timeline tbody");
  const status = document.getElementById("timeline-status");
  const older = document.getElementById("load-older");
  const chips = document.getElementById("dataset-chips");
  const entity = panel.dataset.entity;
  const PAGE = 100;
  let nextUntil = null;
  let generation = 0;

  function cell(tr, value, cls) {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    if (value instanceof Node) td.appendChild(value);
    else ls.text(td, value);
    tr.appendChild(td);
    return td;
  }

  function link(href, label) {
    const a = document.createElement("a");
    a.href = href;
    ls.text(a, label);
    return a;
  }

  function shortTime(iso) {
    return String(iso || "").replace("T", " ").replace(/\.\d+/, "").replace("Z", "");
  }

  function eventRow(item) {
    const e = item.event;
    const tr = document.createElement("tr");
    tr.className = "ev";
    tr.dataset.time = item.time;
    tr.dataset.dataset = e["event.dataset"] || "unknown";
    cell(tr, shortTime(item.time), "nowrap");
    cell(tr, e["event.dataset"] || "unknown");
    const what = document.createElement("div");
    const parts = [e["event.action"], e["event.outcome"], e["user.name"],
      e["source.ip"] && e["destination.ip"] ? e["source.ip"] + " → " + e["destination.ip"] +
        (e["destination.port"] ? ":" + e["destination.port"] : "") : null,
      e["dns.question.name"], e["url.original"]].filter(Boolean);
    if (parts.length) {
      const head = document.createElement("div");
      head.className = "muted";
      ls.text(head, parts.join(" · "));
      what.appendChild(head);
    }
    if (e["rule.name"]) {
      e["rule.name"].forEach(function (name) {
        const t = document.createElement("span");
        t.className = "tag";
        ls.text(t, name);
        what.appendChild(t);
      });
    }
    const raw = document.createElement("div");
    raw.className = "raw";
    ls.text(raw, item.summary);
    what.appendChild(raw);
    cell(tr, what);
    return tr;
  }

  function alertRow(item) {
    const a = item.alert;
    const tr = document.createElement("tr");
    tr.className = "al sev-row-" + a.severity;
    tr.dataset.time = item.time;
    tr.dataset.dataset = "alerts";
    cell(tr, shortTime(item.time), "nowrap");
    const sev = document.createElement("span");
    sev.className = "sev sev-" + a.severity;
    ls.text(sev, panel.dataset.alertLabel + " · " + a.severity);
    cell(tr, sev);
    const what = document.createElement("div");
    what.appendChild(link("/alerts/" + Number(a.id), a["rule.name"]));
    const meta = document.createElement("span");
    meta.className = "muted";
    ls.text(meta, " ×" + a.count + " · " + a.status + (a.assignee ? " · " + a.assignee : ""));
    what.appendChild(meta);
    cell(tr, what);
    return tr;
  }

  function selected() {
    if (!chips) return null;
    const boxes = Array.from(chips.querySelectorAll("input[type=checkbox]"));
    if (boxes.every((b) => b.checked)) return null; // everything: no filter
    return boxes.filter((b) => b.checked).map((b) => b.value);
  }

  async function load(reset) {
    const mine = reset ? ++generation : generation;
    if (reset) {
      body.replaceChildren();
      nextUntil = null;
    }
    const params = new URLSearchParams({ since: panel.dataset.since, limit: String(PAGE) });
    const sets = selected();
    if (sets !== null) params.set("datasets", sets.join(","));
    if (nextUntil) params.set("until", nextUntil);
    older.hidden = true;
    try {
      const url = "/api/v1/entities/" + encodeURIComponent(entity) + "/timeline?" + params;
      const out = await ls.api("GET", url);
      if (mine !== generation) return; // a newer filter change won
      out.items.forEach(function (item) {
        body.appendChild(item.type === "alert" ? alertRow(item) : eventRow(item));
      });
      nextUntil = out.next_until;
      older.hidden = !nextUntil;
      ls.text(status, body.children.length ? "" : panel.dataset.empty);
      panel.dataset.loaded = String(body.children.length);
    } catch (err) {
      ls.text(status, panel.dataset.failed + " " + err.message);
      status.classList.add("error");
    }
  }

  if (chips) chips.addEventListener("change", function () { load(true); });
  older.addEventListener("click", function () { load(false); });
  load(true);
})();
