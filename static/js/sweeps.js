// Weight sweep page: while jobs are unfinished, polls the sweep's JSON every few seconds and reloads the page
// (server-rendered chart, table and front) when a job's status changes (a job finishing brings its figures). No inline script (CSP).
(function () {
  "use strict";
  var POLL_MS = 4000;
  var card = document.getElementById("jobs");
  if (!card || card.dataset.finished === "true") return;
  var last = null;
  function signature(data) {
    return (data.jobs || []).map(function (job) { return job.id + ":" + job.status; }).join("|");
  }
  function poll() {
    fetch(card.dataset.detailUrl, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) {
        if (!data) return;
        var now = signature(data);
        if (last !== null && now !== last) { window.location.reload(); return; }
        last = now;
        if (!data.status.finished) window.setTimeout(poll, POLL_MS);
      })
      .catch(function () { window.setTimeout(poll, POLL_MS * 2); });
  }
  window.setTimeout(poll, POLL_MS);
})();
