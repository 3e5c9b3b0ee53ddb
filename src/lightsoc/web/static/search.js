// The search page: histogram, results, filter in/out, row details, columns,
// saved searches. Event values are attacker-controlled: they only ever reach
// the page through textContent and dataset, never as HTML.
(function () {
  "use strict";
  const root = document.getElementById("search");
  if (!root) return;
  const ls = window.lightsoc;
  const d = root.dataset;
  const q = d.q || "";
  const since = d.since || "24h";
  const columns = (d.fields || "").split(",").filter(Boolean);
  const limit = parseInt(d.limit, 10) || 100;
  const interval = parseInt(d.interval, 10) || 3600;
  // Later pages must not shift while new events arrive: the end is pinned.
  const until = new Date().toISOString();
  const errorBox = document.getElementById("query-error");
  const tbody = document.querySelector("#results tbody");
  const status = document.getElementById("results-status");
  const countEl = document.getElementById("result-count");
  const moreBtn = document.getElementById("load-more");
  let offset = 0;
  let total = 0;

  function fmt(template, values) {
    return template.replace(/\{(\w+)\}/g, (m, k) => (k in values ? String(values[k]) : m));
  }

  function showError(message) {
    ls.text(errorBox, message);
    errorBox.hidden = !message;
  }

  // -- the query language: values are quoted phrases (only \ and " escaped) --
  function quoteValue(value) {
    return '"' + String(value).replace(/\\/g, "\\\\").replace(/"/g, '\\"') + '"';
  }

  function addClause(query, clause) {
    let base = query.trim();
    if (!base) return clause;
    // OR binds looser than AND: keep the existing query whole.
    if (/\bOR\b|\|\|/i.test(base)) base = "(" + base + ")";
    return base + " AND " + clause;
  }

  function searchUrl(query, fieldsParam) {
    const params = new URLSearchParams({ q: query, since: since });
    const f = fieldsParam === undefined ? d.fieldsParam : fieldsParam;
    if (f) params.set("fields", f);
    return "/search?" + params.toString();
  }

  function filter(field, value, out) {
    const clause = (out ? "NOT " : "") + field + ":" + quoteValue(value);
    window.location.assign(searchUrl(addClause(q, clause)));
  }

  // -- cells ------------------------------------------------------------------
  function display(field, value) {
    if (field === "@timestamp" && typeof value === "string") {
      return value.replace("T", " ").replace("Z", "");
    }
    return typeof value === "object" ? JSON.stringify(value) : String(value);
  }

  function valueChip(field, value) {
    const wrap = document.createElement("span");
    wrap.className = "chip";
    const text = document.createElement("span");
    text.className = "val";
    ls.text(text, display(field, value));
    wrap.appendChild(text);
    if (field !== "@timestamp" && typeof value !== "object") {
      for (const out of [false, true]) {
        const b = document.createElement("button");
        b.type = "button";
        b.className = out ? "filter-out" : "filter-in";
        b.textContent = out ? "−" : "+";
        b.title = out ? d.lFilterOut : d.lFilterIn;
        b.setAttribute("aria-label", b.title);
        b.dataset.field = field;
        b.dataset.value = String(value);
        wrap.appendChild(b);
      }
    }
    return wrap;
  }

  function cell(field, value) {
    const td = document.createElement("td");
    td.dataset.field = field;
    if (value === undefined || value === null) return td;
    for (const v of Array.isArray(value) ? value : [value]) td.appendChild(valueChip(field, v));
    return td;
  }

  function row(event) {
    const tr = document.createElement("tr");
    tr.className = "event";
    if (event["event.id"] !== undefined) tr.dataset.id = event["event.id"];
    const toggle = document.createElement("td");
    toggle.className = "toggle-col";
    const b = document.createElement("button");
    b.type = "button";
    b.className = "expand link";
    b.textContent = "▸";
    b.title = d.lExpand;
    b.setAttribute("aria-label", d.lExpand);
    b.setAttribute("aria-expanded", "false");
    toggle.appendChild(b);
    tr.appendChild(toggle);
    for (const c of columns) tr.appendChild(cell(c, event[c]));
    return tr;
  }

  // -- results ----------------------------------------------------------------
  function apiParams(extra) {
    const p = new URLSearchParams({ q: q, since: since, until: until });
    for (const [k, v] of Object.entries(extra)) p.set(k, String(v));
    return p.toString();
  }

  async function loadPage() {
    moreBtn.disabled = true;
    ls.text(status, d.lLoading);
    const wanted = columns.includes("event.id") ? columns : columns.concat(["event.id"]);
    try {
      const data = await ls.api(
        "GET",
        "/api/v1/search?" + apiParams({ limit: limit, offset: offset, fields: wanted.join(",") })
      );
      total = data.total;
      for (const ev of data.events) tbody.appendChild(row(ev));
      offset += data.events.length;
      // A capped total is a lower bound: shown as "10,000+", paging goes on.
      const shownTotal = total.toLocaleString() + (data.total_capped ? "+" : "");
      ls.text(countEl, fmt(d.lMatches, { n: shownTotal }));
      ls.text(
        status,
        total === 0 ? d.lNone : fmt(d.lShowing, { shown: offset, total: shownTotal })
      );
      moreBtn.hidden = data.events.length === 0 || (!data.total_capped && offset >= total);
    } catch (err) {
      ls.text(status, "");
      showError(err.message);
    } finally {
      moreBtn.disabled = false;
    }
  }

  async function expand(button) {
    const tr = button.closest("tr");
    const next = tr.nextElementSibling;
    if (next && next.classList.contains("detail")) {
      next.hidden = !next.hidden;
      button.setAttribute("aria-expanded", String(!next.hidden));
      button.textContent = next.hidden ? "▸" : "▾";
      return;
    }
    const id = tr.dataset.id;
    if (!id) return;
    button.disabled = true;
    try {
      const data = await ls.api(
        "GET",
        "/api/v1/search?" +
          new URLSearchParams({
            q: "event.id:" + quoteValue(id),
            since: since,
            until: until,
            limit: "1",
          }).toString()
      );
      const ev = data.events[0] || {};
      const detail = document.createElement("tr");
      detail.className = "detail";
      const td = document.createElement("td");
      td.colSpan = columns.length + 1;
      const grid = document.createElement("div");
      grid.className = "detail-grid";
      const table = document.createElement("table");
      table.className = "data fields";
      const caption = document.createElement("caption");
      ls.text(caption, d.lFields);
      table.appendChild(caption);
      const body = document.createElement("tbody");
      for (const name of Object.keys(ev).sort()) {
        if (name === "event.original") continue;
        const r = document.createElement("tr");
        const th = document.createElement("th");
        ls.text(th, name);
        r.appendChild(th);
        r.appendChild(cell(name, ev[name]));
        body.appendChild(r);
      }
      table.appendChild(body);
      grid.appendChild(table);
      if (ev["event.original"] !== undefined) {
        const box = document.createElement("div");
        box.className = "original";
        const h = document.createElement("h3");
        ls.text(h, d.lOriginal);
        const pre = document.createElement("pre");
        pre.className = "event-original";
        ls.text(pre, ev["event.original"]);
        box.appendChild(h);
        box.appendChild(pre);
        grid.appendChild(box);
      }
      td.appendChild(grid);
      detail.appendChild(td);
      tr.after(detail);
      button.setAttribute("aria-expanded", "true");
      button.textContent = "▾";
    } catch (err) {
      showError(err.message);
    } finally {
      button.disabled = false;
    }
  }

  // -- histogram ----------------------------------------------------------------
  function spanSeconds() {
    const m = /^\s*(\d+)\s*([smhdw])\s*$/i.exec(since);
    if (!m) return null;
    return parseInt(m[1], 10) * { s: 1, m: 60, h: 3600, d: 86400, w: 604800 }[m[2].toLowerCase()];
  }

  function fillBuckets(buckets) {
    const step = interval * 1000;
    const counts = new Map(buckets.map((b) => [Date.parse(b.time), b.count]));
    const times = [...counts.keys()];
    const span = spanSeconds();
    const end = Date.parse(until);
    const anchor = times.length ? Math.min(...times) : end - (end % step);
    let lo = times.length ? anchor : end - step;
    let hi = times.length ? Math.max(...times) : anchor;
    if (span !== null) {
      while (lo - step > end - span * 1000 && (hi - lo) / step < 2000) lo -= step;
      while (hi + step <= end && (hi - lo) / step < 2000) hi += step;
    }
    const points = [];
    for (let t = lo; t <= hi && points.length < 2000; t += step) {
      points.push({ x: t, y: counts.get(t) || 0 });
    }
    return points;
  }

  function two(n) {
    return String(n).padStart(2, "0");
  }

  function tick(ms) {
    const t = new Date(ms);
    const hm = two(t.getUTCHours()) + ":" + two(t.getUTCMinutes());
    if (interval >= 86400) return t.getUTCFullYear() + "-" + two(t.getUTCMonth() + 1) + "-" + two(t.getUTCDate());
    if (interval >= 3600) return two(t.getUTCMonth() + 1) + "-" + two(t.getUTCDate()) + " " + hm;
    return interval < 60 ? hm + ":" + two(t.getUTCSeconds()) : hm;
  }

  async function histogram() {
    const canvas = document.getElementById("search-hist");
    if (!canvas || typeof Chart === "undefined") return;
    const data = await ls.api(
      "GET",
      "/api/v1/aggregate/histogram?" +
        new URLSearchParams({ interval: String(interval), q: q, since: since }).toString()
    );
    const points = fillBuckets(data.buckets);
    new Chart(canvas, {
      type: "bar",
      data: {
        datasets: [
          {
            label: d.lEvents,
            data: points,
            backgroundColor: "#2563eb",
            barPercentage: 1,
            categoryPercentage: 0.9,
          },
        ],
      },
      options: {
        animation: false,
        maintainAspectRatio: false,
        plugins: {
          legend: { display: false },
          tooltip: { callbacks: { title: (items) => tick(items[0].parsed.x) + " UTC" } },
        },
        scales: {
          x: {
            type: "linear",
            offset: true,
            min: points.length ? points[0].x - (interval * 1000) / 2 : undefined,
            max: points.length ? points[points.length - 1].x + (interval * 1000) / 2 : undefined,
            ticks: { callback: (v) => tick(v), maxRotation: 0, autoSkipPadding: 12 },
            grid: { display: false },
          },
          y: { beginAtZero: true, ticks: { precision: 0 } },
        },
      },
    });
    root.dataset.histogram = String(points.length); // drawn (tests wait for it)
  }

  // -- columns ----------------------------------------------------------------
  function applyColumns(reset) {
    let chosen = [];
    if (!reset) {
      const checked = [...document.querySelectorAll(".columns-list input:checked")].map((i) => i.value);
      chosen = columns.filter((c) => checked.includes(c)).concat(checked.filter((c) => !columns.includes(c)));
    }
    const same = chosen.join(",") === d.defaultFields;
    const param = reset || chosen.length === 0 || same ? "" : chosen.join(",");
    window.location.assign(searchUrl(q, param));
  }

  // -- saved searches -----------------------------------------------------------
  async function save(form) {
    const err = document.getElementById("save-error");
    err.hidden = true;
    const shared = form.elements.namedItem("shared");
    try {
      await ls.api("POST", "/api/v1/saved-searches", {
        name: form.elements.namedItem("name").value,
        query: q,
        since: since,
        fields: d.fieldsParam || "",
        shared: shared ? shared.checked : false,
      });
      window.location.reload();
    } catch (e) {
      ls.text(err, e.message);
      err.hidden = false;
    }
  }

  async function removeSaved(button) {
    try {
      await ls.api("DELETE", "/api/v1/saved-searches/" + encodeURIComponent(button.dataset.id));
      button.closest("li").remove();
    } catch (e) {
      const err = document.getElementById("save-error");
      ls.text(err, e.message);
      err.hidden = false;
    }
  }

  // -- wiring -------------------------------------------------------------------
  document.addEventListener("click", (ev) => {
    const el = ev.target instanceof Element ? ev.target.closest("button") : null;
    if (!el) return;
    if (el.classList.contains("filter-in") || el.classList.contains("filter-out")) {
      filter(el.dataset.field, el.dataset.value, el.classList.contains("filter-out"));
    } else if (el.classList.contains("expand")) {
      expand(el);
    } else if (el.classList.contains("delete-saved")) {
      removeSaved(el);
    } else if (el.id === "columns-apply") {
      applyColumns(false);
    } else if (el.id === "columns-reset") {
      applyColumns(true);
    } else if (el === moreBtn) {
      loadPage();
    }
  });
  document.getElementById("save-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    save(ev.target);
  });

  if (d.error) return; // the server already explained what is wrong with the query
  loadPage();
  histogram().catch((err) => showError(err.message));
})();
