// Dashboard: fetches /api/v1/dashboard (one call), draws the charts and tables,
// refetches every 30 s while the tab is visible. Values from events are put in
// the page with textContent and link hrefs from the API (same-site paths) only.
(function () {
  "use strict";
  const root = document.getElementById("dashboard");
  if (!root || !window.lightsoc) return;
  const L = JSON.parse(root.getAttribute("data-labels") || "{}");
  const REFRESH_MS = 30000;
  const PALETTE = ["#2563eb", "#16a34a", "#d97706", "#9333ea", "#0891b2", "#db2777",
    "#65a30d", "#ea580c", "#4f46e5", "#0d9488"];
  const OTHER_COLOR = "#94a3b8";
  const SEV_ORDER = ["informational", "low", "medium", "high", "critical"];
  const SEV_COLOR = { critical: "#7f1d1d", high: "#dc2626", medium: "#d97706",
    low: "#2563eb", informational: "#64748b" };
  const picker = root.querySelector("select[name=since]");
  const auto = document.getElementById("dash-auto");
  const charts = {};
  let since = root.getAttribute("data-since") || "24h";
  let timer = null;
  let inflight = false;

  function label(key) { return Object.prototype.hasOwnProperty.call(L, key) ? L[key] : key; }
  function fmt(template, fields) {
    return String(template).replace(/\{(\w+)\}/g, function (m, k) {
      return Object.prototype.hasOwnProperty.call(fields, k) ? String(fields[k]) : m;
    });
  }
  function num(n) {
    if (n === null || n === undefined) return "–";
    if (typeof n === "number" && !Number.isInteger(n)) return n >= 10 ? n.toFixed(0) : n.toFixed(2);
    return Number(n).toLocaleString("en-US");
  }
  function pad(n) { return String(n).padStart(2, "0"); }
  function timeTick(ms, long) {
    const d = new Date(ms);
    const hm = pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes());
    return long ? pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()) + " " + hm : hm;
  }
  function utcTime(iso) { return iso ? String(iso).replace("T", " ").slice(0, 19) : ""; }
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) lightsoc.text(e, text);
    return e;
  }

  function chart(id, type, datasets, interval) {
    const long = interval >= 3 * 3600;
    const config = {
      type: type,
      data: { datasets: datasets },
      options: {
        animation: false,
        maintainAspectRatio: false,
        parsing: false,
        normalized: true,
        interaction: { mode: "index", intersect: false },
        scales: {
          x: { type: "linear", stacked: true, offset: type === "bar",
            ticks: { maxTicksLimit: 8, callback: function (v) { return timeTick(v, long); } } },
          y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } },
        },
        plugins: {
          legend: { position: "bottom", labels: { boxWidth: 12 } },
          tooltip: { callbacks: { title: function (items) {
            return items.length ? timeTick(items[0].parsed.x, true) + " UTC" : "";
          } } },
        },
        elements: { point: { radius: 0 }, line: { borderWidth: 1.5, tension: 0.2 } },
      },
    };
    if (charts[id]) {
      charts[id].data.datasets = datasets;
      charts[id].options.scales.x.ticks.callback = config.options.scales.x.ticks.callback;
      charts[id].update();
      return;
    }
    charts[id] = new Chart(document.getElementById(id), config);
  }

  function points(series) { return series.map(function (p) { return { x: p[0], y: p[1] }; }); }

  function drawDatasets(d) {
    let i = 0;
    const sets = Object.keys(d.series).map(function (name) {
      const color = name === "other" ? OTHER_COLOR : PALETTE[i++ % PALETTE.length];
      return { label: name === "other" ? label("other") : name, data: points(d.series[name]),
        borderColor: color, backgroundColor: color + "99", fill: true };
    });
    chart("chart-datasets", "line", sets, d.interval);
  }

  function drawAlerts(a) {
    const sets = SEV_ORDER.filter(function (s) { return a.series[s]; }).map(function (s) {
      return { label: label(s), data: points(a.series[s]), backgroundColor: SEV_COLOR[s],
        borderColor: SEV_COLOR[s] };
    });
    chart("chart-alerts", "bar", sets, a.interval);
  }

  function drawTops(top) {
    root.querySelectorAll("table[data-top-field]").forEach(function (table) {
      const rows = top[table.getAttribute("data-top-field")] || [];
      const body = table.tBodies[0];
      const max = rows.reduce(function (m, r) { return Math.max(m, r.count); }, 0);
      body.replaceChildren();
      rows.forEach(function (r) {
        const tr = el("tr");
        const a = el("a", "entity", r.value);
        a.href = r.link; // built by the server: /entity/... or /search?q=... (encoded)
        const td = el("td");
        td.appendChild(a);
        tr.appendChild(td);
        tr.appendChild(el("td", "num", num(r.count)));
        const barCell = el("td", "dash-bar-cell");
        const bar = el("div", "dash-bar");
        bar.style.width = (max ? (100 * r.count) / max : 0).toFixed(1) + "%"; // CSSOM: CSP-safe
        barCell.appendChild(bar);
        tr.appendChild(barCell);
        body.appendChild(tr);
      });
      const empty = table.parentElement.querySelector(".dash-empty");
      if (empty) empty.hidden = rows.length > 0;
      table.hidden = rows.length === 0;
    });
  }

  function drawSources(sources) {
    const body = document.querySelector("#dash-sources tbody");
    body.replaceChildren();
    let bad = 0;
    sources.forEach(function (s) {
      if (s.status !== "ok") bad++;
      const tr = el("tr");
      tr.appendChild(el("td", "mono", s.id));
      tr.appendChild(el("td", "", s.type));
      tr.appendChild(el("td", "num", num(s.events)));
      tr.appendChild(el("td", "num", num(s.parse_failures)));
      tr.appendChild(el("td", "num", num(s.dropped)));
      tr.appendChild(el("td", "", utcTime(s.last_seen)));
      const st = el("td");
      st.appendChild(el("span", "src-status src-" + s.status, label(s.status)));
      if (s.status_message) {
        st.appendChild(el("div", "muted small", fmt(label(s.status_message), s.status_fields || {})));
      }
      tr.appendChild(st);
      body.appendChild(tr);
    });
    lightsoc.text(document.getElementById("kpi-sources"), num(bad) + " / " + num(sources.length));
  }

  function render(data) {
    const eps = document.getElementById("kpi-eps");
    lightsoc.text(eps, data.events_per_second === null ? label("no_rate") : num(data.events_per_second));
    lightsoc.text(document.getElementById("kpi-total"), num(data.total_events));
    const alertTotal = Object.values(data.alerts_by_severity.totals).reduce(function (a, b) { return a + b; }, 0);
    lightsoc.text(document.getElementById("kpi-alerts"), num(alertTotal));
    drawDatasets(data.by_dataset);
    drawAlerts(data.alerts_by_severity);
    drawTops(data.top);
    drawSources(data.sources);
    lightsoc.text(document.getElementById("dash-updated"),
      fmt(label("updated"), { time: utcTime(data.generated).slice(11) }));
    root.setAttribute("data-loaded", since);
  }

  async function load() {
    if (inflight) return;
    inflight = true;
    const error = document.getElementById("dash-error");
    try {
      const data = await lightsoc.api("GET", "/api/v1/dashboard?since=" + encodeURIComponent(since));
      lightsoc.text(error, "");
      render(data);
    } catch (e) {
      lightsoc.text(error, e.message);
    } finally {
      inflight = false;
    }
  }

  function schedule() {
    if (timer) clearInterval(timer);
    timer = null;
    if (auto.checked && !document.hidden) timer = setInterval(load, REFRESH_MS);
  }

  picker.addEventListener("change", function () {
    since = picker.value;
    const url = new URL(window.location.href);
    url.searchParams.set("since", since);
    history.replaceState(null, "", url.pathname + url.search);
    // the language form goes back to this address: keep the chosen range there too
    const next = document.querySelector('form[action="/locale"] input[name=next]');
    if (next) next.value = url.pathname + url.search;
    load();
    schedule();
  });
  document.getElementById("dash-range").addEventListener("submit", function (ev) { ev.preventDefault(); });
  auto.addEventListener("change", schedule);
  document.addEventListener("visibilitychange", function () {
    if (document.hidden) {
      lightsoc.text(document.getElementById("dash-updated"), label("paused"));
    } else if (auto.checked) {
      load(); // catch up at once, then every 30 s again
    }
    schedule();
  });

  load();
  schedule();
})();
