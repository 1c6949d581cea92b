/* Report page: while a report is computed on a worker, poll the status of that one snapshot and move the
   progress bar; reload when it is done (the page then shows it). Polling one snapshot never queues another
   computation as new ratings arrive. No inline script is allowed (Content-Security-Policy). */
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
      .then(function (response) {
        if (!response.ok) throw new Error("status " + response.status);
        return response.json();
      })
      .then(function (snapshot) {
        if (snapshot.status === "queued" || snapshot.status === "running") {
          bar.value = snapshot.progress;
          if (text) {
            text.textContent = snapshot.status === "queued"
              ? "waiting for a worker"
              : Math.round(snapshot.progress * 100) + "%";
          }
          window.setTimeout(poll, POLL_MS);
        } else {
          window.location.reload();
        }
      })
      .catch(function () { window.setTimeout(poll, POLL_MS * 4); });
  }
  window.setTimeout(poll, POLL_MS);
})();
