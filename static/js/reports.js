/* Report page. No inline script is allowed (Content-Security-Policy), so everything lives here:
   1. While a report is computed on a worker, poll the status of that one snapshot and move the progress bar;
      reload when it is done. Polling one snapshot never queues another computation as new ratings arrive.
   2. The criteria sections are closed <details>: a contents link or a #criterion-... address opens its
      section, and printing opens them all. Without this script the sections still open by click. */
(function () {
  "use strict";

  function openTarget(id) {
    var target = id && document.getElementById(id);
    if (target && target.tagName === "DETAILS") target.open = true;
    return target;
  }
  openTarget(window.location.hash.slice(1));
  window.addEventListener("hashchange", function () { openTarget(window.location.hash.slice(1)); });
  document.addEventListener("click", function (event) {
    var link = event.target.closest ? event.target.closest("a[href^='#']") : null;
    if (link) openTarget(link.getAttribute("href").slice(1));
  });
  var reopen = [];
  window.addEventListener("beforeprint", function () {
    document.querySelectorAll("details:not([open])").forEach(function (d) { reopen.push(d); d.open = true; });
  });
  window.addEventListener("afterprint", function () {
    reopen.forEach(function (d) { d.open = false; });
    reopen = [];
  });

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
