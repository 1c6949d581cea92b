/* Report page: while a report is computed, poll its status (the API, same filters) and move the progress
   bar; reload when it is done. No inline script is allowed (Content-Security-Policy). */
(function () {
  "use strict";

  var status = document.getElementById("report-status");
  var bar = document.getElementById("report-progress-bar");
  var text = document.getElementById("report-progress-text");
  if (!status || !bar) return;
  var url = status.getAttribute("data-status-url");
  var POLL_MS = 1500;

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.json(); })
      .then(function (document_) {
        if (document_.status === "queued" || document_.status === "running") {
          bar.value = document_.progress;
          if (text) text.textContent = Math.round(document_.progress * 100) + "%";
          window.setTimeout(poll, POLL_MS);
        } else {
          window.location.reload();
        }
      })
      .catch(function () { window.setTimeout(poll, POLL_MS * 4); });
  }
  window.setTimeout(poll, POLL_MS);
})();
