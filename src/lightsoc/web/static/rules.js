// /rules: validate, test and save Sigma rules; switch rules; simple rules.
// Rule text and events are untrusted: everything is shown with textContent.
(function () {
  "use strict";
  const ls = window.lightsoc;

  function fill(template, values) {
    return template.replace(/\{(\w+)\}/g, function (m, k) {
      return Object.prototype.hasOwnProperty.call(values, k) ? String(values[k]) : m;
    });
  }

  function strings() {
    const el = document.getElementById("rule-strings");
    return el ? el.dataset : {};
  }

  function message(text, ok) {
    const box = document.getElementById("rule-message");
    if (!box) return;
    ls.text(box, text);
    box.classList.toggle("error", !ok);
    box.classList.toggle("ok", !!ok);
    box.hidden = false;
  }

  function yaml() {
    return document.getElementById("rule-yaml").value;
  }

  async function run(button, work) {
    button.disabled = true;
    message(strings().working || "...", true);
    try {
      await work();
    } catch (err) {
      message(err.message, false);
      const results = document.getElementById("rule-results");
      if (results) results.hidden = true;
    } finally {
      button.disabled = false;
    }
  }

  function cell(row, value, cls) {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    ls.text(td, value);
    row.appendChild(td);
  }

  function showMatches(data) {
    const s = strings();
    let text = fill(s.matches || "{m} / {n}", {
      m: data.matches, n: data.events_scanned, ms: data.took_ms,
    });
    if (data.capped) text += " " + (s.capped || "");
    ls.text(document.getElementById("rule-summary"), text);
    const body = document.querySelector("#rule-matches tbody");
    body.replaceChildren();
    for (const ev of data.events) {
      const tr = document.createElement("tr");
      cell(tr, (ev["@timestamp"] || "").replace("T", " ").replace("Z", ""));
      cell(tr, ev["event.dataset"] || "");
      cell(tr, ev["source.ip"] || "");
      cell(tr, ev["event.original"] || ev["message"] || ev["url.original"] || "", "mono small wrap");
      body.appendChild(tr);
    }
    document.getElementById("rule-results").hidden = false;
  }

  function wireEditor() {
    const validate = document.getElementById("rule-validate");
    if (!validate) return;
    validate.addEventListener("click", function () {
      run(validate, async function () {
        const data = await ls.api("POST", "/api/v1/rules/validate", { yaml: yaml() });
        if (!data.valid) {
          message(data.errors.join("\n"), false);
          return;
        }
        message(fill(strings().valid || "{n}", { n: data.rules.length + data.correlations.length }), true);
      });
    });
    const test = document.getElementById("rule-test");
    test.addEventListener("click", function () {
      run(test, async function () {
        const data = await ls.api("POST", "/api/v1/rules/test", { yaml: yaml(), since: "24h" });
        message(fill(strings().valid || "{n}", { n: data.rules.length }), true);
        showMatches(data);
      });
    });
    const save = document.getElementById("rule-save");
    if (save) {
      save.addEventListener("click", function () {
        run(save, async function () {
          const overwrite = document.getElementById("rule-overwrite").checked;
          const data = await ls.api("POST", "/api/v1/rules", { yaml: yaml(), overwrite: overwrite });
          message(fill(strings().saved || "{file}", { file: data.file }), true);
        });
      });
    }
  }

  function listError(text) {
    const el = document.getElementById("rule-list-error") || document.getElementById("simple-error");
    if (!el) return;
    ls.text(el, text);
    el.hidden = false;
  }

  function wireSwitches() {
    document.addEventListener("click", async function (ev) {
      const target = ev.target;
      if (!(target instanceof HTMLButtonElement)) return;
      const verb = target.dataset.ruleSwitch;
      const del = target.dataset.simpleDelete;
      if (!verb && !del) return;
      target.disabled = true;
      try {
        if (verb) {
          const id = encodeURIComponent(target.dataset.rule);
          await ls.api("POST", "/api/v1/rules/" + id + "/" + verb);
        } else {
          await ls.api("DELETE", "/api/v1/rules/simple/" + encodeURIComponent(del));
        }
        window.location.reload();
      } catch (err) {
        listError(err.message);
        target.disabled = false;
      }
    });
  }

  function wireSimpleForm() {
    const form = document.getElementById("simple-form");
    if (!form) return;
    form.addEventListener("submit", async function (ev) {
      ev.preventDefault();
      const f = new FormData(form);
      const body = {};
      for (const k of ["name", "field", "kind", "pattern", "severity"]) body[k] = f.get(k);
      const err = document.getElementById("simple-error");
      try {
        await ls.api("POST", "/api/v1/rules/simple", body);
        window.location.reload();
      } catch (e) {
        ls.text(err, e.message);
        err.hidden = false;
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    wireEditor();
    wireSwitches();
    wireSimpleForm();
  });
})();
