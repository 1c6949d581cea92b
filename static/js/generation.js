// A generation run's page: poll its API detail and update the progress bar until the run finishes.
(function () {
  "use strict";
  var root = document.getElementById("generation-run");
  if (!root) return;
  var POLL_MS = 2000;
  var FINISHED = ["succeeded", "failed", "cancelled"];

  function text(id, value) {
    var node = document.getElementById(id);
    if (node) node.textContent = value;
  }

  function show(run) {
    var bar = document.getElementById("run-progress");
    if (bar) bar.value = run.fraction;
    text("run-status", run.status.charAt(0).toUpperCase() + run.status.slice(1));
    text("run-prompts", run.done_prompts + " of " + run.total_prompts + " prompts");
    if (run.error) text("run-error", run.error.slice(-400));
  }

  function poll() {
    fetch(root.dataset.detailUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error(response.status);
        return response.json();
      })
      .then(function (run) {
        show(run);
        if (FINISHED.indexOf(run.status) === -1) {
          window.setTimeout(poll, POLL_MS);
        } else if (root.dataset.finished !== "true") {
          window.location.reload(); // show the finished page: log, follow-up link
        }
      })
      .catch(function () { window.setTimeout(poll, POLL_MS * 3); });
  }

  if (root.dataset.finished !== "true") poll();
})();
