/* Ruis console: draws the charts whose data the page carries in
   <script type="application/json"> blocks (the same numbers are in a table next to each
   chart). No inline scripts or styles: the Content-Security-Policy forbids them. */
(function () {
  "use strict";

  var INK = "#1f2d3d";
  var ACCENT = "#0172ad";
  var GRID = "rgba(0,0,0,0.08)";

  function data(canvas) {
    var block = document.getElementById(canvas.getAttribute("data-chart"));
    return block ? JSON.parse(block.textContent) : null;
  }

  function burnDown(canvas, d) {
    return new window.Chart(canvas, {
      type: "line",
      data: {
        labels: d.labels,
        datasets: [{
          label: d.series[0].label,
          data: d.series[0].values,
          stepped: true,
          borderColor: ACCENT,
          backgroundColor: "rgba(1,114,173,0.12)",
          fill: true,
          pointRadius: 3
        }]
      },
      options: {
        maintainAspectRatio: false,
        animation: false,
        scales: {
          y: { min: 0, suggestedMax: d.total, title: { display: true, text: d.axis || d.unit }, grid: { color: GRID } },
          x: { ticks: { maxRotation: 0, autoSkip: true, maxTicksLimit: 6 }, grid: { display: false } }
        },
        plugins: { legend: { display: false } }
      }
    });
  }

  function errorBars(canvas, d) {
    var bars = window.ChartErrorBars;
    if (bars && !window.Chart.registry.controllers.get("barWithErrorBars")) {
      window.Chart.register(bars.BarWithErrorBarsController, bars.BarWithErrorBar);
    }
    var points = d.values.map(function (v, i) {
      return { y: v, yMin: d.lower[i], yMax: d.upper[i] };
    });
    return new window.Chart(canvas, {
      type: "barWithErrorBars",
      data: {
        labels: d.labels,
        datasets: [{ label: "value", data: points, backgroundColor: "rgba(1,114,173,0.55)", borderColor: ACCENT, borderWidth: 1 }]
      },
      options: {
        maintainAspectRatio: false,
        animation: false,
        scales: { y: { grid: { color: GRID }, ticks: { color: INK } }, x: { grid: { display: false } } },
        plugins: { legend: { display: false } }
      }
    });
  }

  var DRAW = { "burn-down": burnDown, "error-bars": errorBars };

  function drawAll(root) {
    if (!window.Chart) { return; }
    root.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      if (canvas.getAttribute("data-drawn")) { return; }
      var d = data(canvas);
      if (d && DRAW[d.kind]) {
        DRAW[d.kind](canvas, d);
        canvas.setAttribute("data-drawn", "1");
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () { drawAll(document); });
  document.addEventListener("htmx:afterSwap", function (event) { drawAll(event.target); });
})();
