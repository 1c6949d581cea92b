// Training job page: polls the job's JSON endpoints every few seconds, updates the progress bar
// and draws the loss curve as SVG. No inline script (Content-Security-Policy: script-src 'self').
(function () {
  "use strict";
  var POLL_MS = 3000;
  var SVG = "http://www.w3.org/2000/svg";
  var PAD = { left: 56, right: 16, top: 12, bottom: 32 };
  var LARGE = { width: 640, height: 240 }, SMALL = { width: 360, height: 200 }; // small: the reward charts, side by side
  var SERIES = [
    { key: "loss", label: "train loss", color: "#2458c6" },
    { key: "eval_loss", label: "held-out loss", color: "#c0392b" },
  ];
  // Reward accuracy and margin beside the loss. DPO and MODPO log the implicit reward (rewards/*), reward models
  // their own accuracy and margin; SFT and merges have no reward, so their charts say why they stay empty.
  var TRAIN = "#2458c6", HELDOUT = "#c0392b";
  var REWARD_SERIES = {
    accuracy: {
      dpo: [{ key: "rewards/accuracies", label: "train", color: TRAIN }, { key: "eval_rewards/accuracies", label: "held-out", color: HELDOUT }],
      reward: [{ key: "accuracy", label: "train", color: TRAIN }, { key: "eval_pairwise_accuracy", label: "held-out", color: HELDOUT }],
    },
    margin: {
      dpo: [{ key: "rewards/margins", label: "train", color: TRAIN }, { key: "eval_rewards/margins", label: "held-out", color: HELDOUT }],
      reward: [{ key: "margin", label: "train", color: TRAIN }, { key: "eval_mean_margin", label: "held-out", color: HELDOUT }],
    },
  };
  REWARD_SERIES.accuracy.modpo = REWARD_SERIES.accuracy.dpo;
  REWARD_SERIES.margin.modpo = REWARD_SERIES.margin.dpo;
  var NO_REWARD = {
    sft: "SFT learns the chosen responses only: it has no reward, so no reward accuracy or margin.",
    merge: "A merge averages finished models and trains nothing: no metrics are logged.",
  };
  var FINISHED = ["succeeded", "failed", "cancelled"];

  var root = document.getElementById("job");
  if (!root) return;

  function text(id, value) {
    var element = document.getElementById(id);
    if (element) element.textContent = value;
  }

  function svgElement(name, attributes) {
    var element = document.createElementNS(SVG, name);
    Object.keys(attributes).forEach(function (key) { element.setAttribute(key, attributes[key]); });
    return element;
  }

  function points(metrics, key) {
    return metrics
      .filter(function (m) { return typeof m.values[key] === "number"; })
      .map(function (m) { return [m.step, m.values[key]]; });
  }

  function drawSeries(chart, seriesList, metrics, emptyText, size) {
    if (!chart) return;
    var WIDTH = size.width, HEIGHT = size.height;
    var series = seriesList.map(function (s) { return { s: s, points: points(metrics, s.key) }; })
      .filter(function (entry) { return entry.points.length > 0; });
    if (!series.length) {
      if (emptyText) {
        var empty = document.createElement("p");
        empty.className = "muted";
        empty.textContent = emptyText;
        chart.replaceChildren(empty);
      }
      return;
    }
    var all = [].concat.apply([], series.map(function (entry) { return entry.points; }));
    var xs = all.map(function (p) { return p[0]; }), ys = all.map(function (p) { return p[1]; });
    var xMin = Math.min.apply(null, xs), xMax = Math.max.apply(null, xs);
    var yMin = Math.min.apply(null, ys), yMax = Math.max.apply(null, ys);
    if (xMax === xMin) { xMax = xMin + 1; }
    if (yMax === yMin) { yMax = yMin + 1e-6; }
    var plotW = WIDTH - PAD.left - PAD.right, plotH = HEIGHT - PAD.top - PAD.bottom;
    function sx(x) { return PAD.left + (x - xMin) / (xMax - xMin) * plotW; }
    function sy(y) { return PAD.top + (1 - (y - yMin) / (yMax - yMin)) * plotH; }

    var svg = svgElement("svg", { viewBox: "0 0 " + WIDTH + " " + HEIGHT, width: "100%", "aria-hidden": "true" });
    svg.appendChild(svgElement("line", { x1: PAD.left, y1: PAD.top + plotH, x2: PAD.left + plotW, y2: PAD.top + plotH, stroke: "#888" }));
    svg.appendChild(svgElement("line", { x1: PAD.left, y1: PAD.top, x2: PAD.left, y2: PAD.top + plotH, stroke: "#888" }));
    [[yMax, PAD.top + 10], [yMin, PAD.top + plotH]].forEach(function (tick) {
      var label = svgElement("text", { x: PAD.left - 6, y: tick[1], "text-anchor": "end", "font-size": "11", fill: "#555" });
      label.textContent = tick[0].toPrecision(3);
      svg.appendChild(label);
    });
    [[xMin, "start"], [xMax, "end"]].forEach(function (tick) {
      var label = svgElement("text", { x: sx(tick[0]), y: HEIGHT - 12, "text-anchor": tick[1], "font-size": "11", fill: "#555" });
      label.textContent = "step " + tick[0];
      svg.appendChild(label);
    });
    series.forEach(function (entry, index) {
      var path = entry.points.map(function (p) { return sx(p[0]).toFixed(1) + "," + sy(p[1]).toFixed(1); }).join(" ");
      svg.appendChild(svgElement("polyline", { points: path, fill: "none", stroke: entry.s.color, "stroke-width": "2" }));
      entry.points.forEach(function (p) {
        svg.appendChild(svgElement("circle", { cx: sx(p[0]), cy: sy(p[1]), r: "2.5", fill: entry.s.color }));
      });
      var legend = svgElement("text", { x: PAD.left + plotW, y: PAD.top + 12 + 14 * index, "text-anchor": "end", "font-size": "12", fill: entry.s.color });
      legend.textContent = entry.s.label;
      svg.appendChild(legend);
    });
    chart.replaceChildren(svg);
  }

  function drawChart(metrics) {
    drawSeries(document.getElementById("loss-chart"), SERIES, metrics, null, LARGE);
    ["accuracy", "margin"].forEach(function (name) {
      var chart = document.getElementById(name + "-chart");
      if (!chart) return;
      var kind = chart.dataset.kind;
      var list = REWARD_SERIES[name][kind];
      var why = !list ? NO_REWARD[kind] || "This kind of job logs no reward " + name + "."
        : metrics.length ? "No reward " + name + " logged yet." : "No metrics yet.";
      drawSeries(chart, list || [], metrics, why, SMALL);
    });
    if (!metrics.length) return;

    var last = metrics[metrics.length - 1].values;
    var shown = ["loss", "rewards/accuracies", "rewards/margins", "eval_loss", "eval_pairwise_accuracy"]
      .filter(function (key) { return typeof last[key] === "number"; })
      .map(function (key) { return key + " " + last[key].toPrecision(4); });
    text("latest-metrics", shown.length ? "Latest: " + shown.join(" · ") : "");
  }

  function showJob(job) {
    var progress = document.getElementById("job-progress");
    if (progress) { progress.value = job.fraction; progress.textContent = Math.round(job.fraction * 100) + "%"; }
    text("job-status", job.status);
    text("job-step", "step " + job.step + " of " + (job.total_steps || "?"));
    text("job-epoch", "epoch " + Number(job.epoch).toFixed(2));
    text("job-attempts", "attempt " + job.attempts + " of " + job.max_attempts);
    // The API gives ISO 8601 in the server's time zone; shown as the page first rendered it (Y-m-d H:i:s).
    text("job-heartbeat", job.heartbeat_at ? job.heartbeat_at.replace("T", " ").slice(0, 19) : "—");
    if (job.error) text("job-error", job.error.slice(-400));
  }

  function getJSON(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error(url + ": " + response.status);
        return response.json();
      });
  }

  function poll() {
    Promise.all([getJSON(root.dataset.detailUrl), getJSON(root.dataset.metricsUrl)])
      .then(function (results) {
        showJob(results[0]);
        drawChart(results[1]);
        if (FINISHED.indexOf(results[0].status) === -1) {
          window.setTimeout(poll, POLL_MS);
        } else if (root.dataset.finished !== "true") {
          window.location.reload(); // show the finished page: download link, result, register form
        }
      })
      .catch(function () { window.setTimeout(poll, POLL_MS * 3); });
  }

  poll();
})();
