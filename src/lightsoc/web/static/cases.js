// Case pages: confirm before removing something from a case, Ctrl+Enter submits
// a textarea's form. Nothing here writes data into the page as HTML.
(function () {
  "use strict";

  document.addEventListener("submit", function (ev) {
    const button = ev.submitter;
    const question = button instanceof HTMLElement ? button.getAttribute("data-confirm") : null;
    if (question && !window.confirm(question)) ev.preventDefault();
  });

  document.addEventListener("keydown", function (ev) {
    const el = ev.target;
    if (el instanceof HTMLTextAreaElement && ev.key === "Enter" && (ev.ctrlKey || ev.metaKey) && el.form) {
      ev.preventDefault();
      el.form.requestSubmit ? el.form.requestSubmit() : el.form.submit();
    }
  });
})();
