// Suspicious connects: rate a row 1/2/3 and allow a pair, through /api/v1/connects.
// Row values are log content: only textContent and attributes, never innerHTML.
(function () {
  "use strict";
  const table = document.getElementById("connects-table");
  if (!table || !window.lightsoc) return;
  const type = table.dataset.type;
  const status = document.getElementById("connects-status");

  function say(message, bad) {
    if (!status) return;
    window.lightsoc.text(status, message);
    status.classList.toggle("error", !!bad);
  }

  function failed(err) {
    say((table.dataset.msgFailed || "{error}").replace("{error}", err.message || String(err)), true);
  }

  // A rating covers every row with the same documents and words (the training
  // replicates it by its words), so all such rows on the page show it.
  function markRated(words, value, label) {
    table.querySelectorAll("tbody tr").forEach(function (tr) {
      if (tr.dataset.words !== words) return;
      tr.classList.remove("rated-1", "rated-2", "rated-3");
      tr.classList.add("rated", "rated-" + value);
      const mark = tr.querySelector("[data-mark]");
      if (mark) window.lightsoc.text(mark, label);
      tr.querySelectorAll("button[data-rate]").forEach(function (b) {
        b.setAttribute("aria-pressed", b.dataset.rate === String(value) ? "true" : "false");
      });
    });
  }

  async function rate(tr, button) {
    const value = Number(button.dataset.rate);
    const url = "/api/v1/connects/" + encodeURIComponent(type) + "/" +
      encodeURIComponent(tr.dataset.id) + "/rating";
    button.disabled = true;
    try {
      await window.lightsoc.api("POST", url, { rating: value });
      markRated(tr.dataset.words, value, button.dataset.label || String(value));
      say((table.dataset.msgRated || "{label}").replace("{label}", button.dataset.label || value));
    } catch (err) {
      failed(err);
    } finally {
      button.disabled = false;
    }
  }

  async function allow(tr, button) {
    button.disabled = true;
    try {
      await window.lightsoc.api("POST", "/api/v1/connects/allow", {
        type: type,
        a: button.dataset.allowA,
        b: button.dataset.allowB,
      });
      // the same pair on other rows is allowed too
      table.querySelectorAll("button[data-allow-a]").forEach(function (b) {
        if (b.dataset.allowA === button.dataset.allowA && b.dataset.allowB === button.dataset.allowB) {
          b.disabled = true;
          b.closest("tr").classList.add("allowed");
        }
      });
      say(table.dataset.msgAllowed || "");
    } catch (err) {
      button.disabled = false;
      failed(err);
    }
  }

  table.addEventListener("click", function (ev) {
    const button = ev.target instanceof Element ? ev.target.closest("button") : null;
    if (!button || !table.contains(button)) return;
    const tr = button.closest("tr");
    if (!tr) return;
    if (button.dataset.rate) rate(tr, button);
    else if (button.dataset.allowA) allow(tr, button);
  });
})();
