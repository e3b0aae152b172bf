// The Voice quality tab's live chart: the roundtrip's p50, p95 and p99 over time, above the tab's
// table (whose first rows are the headline). Locust's web UI renders an extended tab as a table
// only; this script, served by the harness and added to Locust's page, draws the chart there and
// keeps it in place while the tab is shown. Data: ./voice/chart.json (one point every 2 s, over
// the turns of the last 10 s, as Locust's own Charts tab does).
(function () {
  "use strict";
  var TAB = "voice-quality";
  var BANDS = [[100, "good"], [500, "slow"], [1000, "bad"]];  // the guide's roundtrip edges (ms)
  // Drawn p99 first, so the lower lines stay visible where they meet it.
  var LINES = [["p99", "#c62828"], ["p95", "#ef6c00"], ["p50", "#2e7d32"]];
  var SVG = "http://www.w3.org/2000/svg";
  var box = null;

  function onTab() {
    return new URLSearchParams(window.location.search).get("tab") === TAB;
  }

  function place() {
    var table = document.querySelector("table");
    if (!onTab() || !table) {
      if (box) box.style.display = "none";
      return null;
    }
    var anchor = table.closest(".MuiTableContainer-root") || table;
    if (!box) {
      box = document.createElement("div");
      box.id = "voice-roundtrip-chart";
      box.style.cssText = "margin: 8px 0 16px 0; font: 13px sans-serif;";
    }
    if (anchor.previousSibling !== box) anchor.parentNode.insertBefore(box, anchor);
    box.style.display = "";
    return box;
  }

  function el(name, attrs, text) {
    var node = document.createElementNS(SVG, name);
    for (var key in attrs) node.setAttribute(key, attrs[key]);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function draw(target, data) {
    var width = Math.max(target.clientWidth || 800, 400), height = 220;
    var left = 56, right = 16, top = 24, bottom = 28;
    var n = data.t.length;
    var ymax = 100;
    LINES.forEach(function (line) { data[line[0]].forEach(function (v) { if (v > ymax) ymax = v; }); });
    ymax = Math.ceil(ymax * 1.1 / 100) * 100;
    var t0 = n ? data.t[0] : 0, t1 = n ? data.t[n - 1] : 1;
    if (t1 <= t0) t1 = t0 + 1;
    function x(t) { return left + (t - t0) / (t1 - t0) * (width - left - right); }
    function y(v) { return top + (1 - v / ymax) * (height - top - bottom); }
    var svg = el("svg", {width: width, height: height, role: "img",
                         "aria-label": "Roundtrip p50, p95 and p99 over time"});
    svg.appendChild(el("text", {x: left, y: 14, "font-weight": "bold"},
                       "Roundtrip over time (ms): p50, p95, p99 of the real-time turns of the last 10 s"));
    BANDS.forEach(function (band) {
      if (band[0] > ymax) return;
      svg.appendChild(el("line", {x1: left, x2: width - right, y1: y(band[0]), y2: y(band[0]),
                                  stroke: "#999", "stroke-dasharray": "4 3"}));
      svg.appendChild(el("text", {x: 4, y: y(band[0]) + 4, fill: "#666"}, band[0] + " ms"));
    });
    svg.appendChild(el("text", {x: 4, y: top + 4, fill: "#666"}, ymax + " ms"));
    LINES.forEach(function (line, i) {
      var values = data[line[0]];
      var points = values.map(function (v, k) { return x(data.t[k]).toFixed(1) + "," + y(v).toFixed(1); });
      svg.appendChild(el("polyline", {points: points.join(" "), fill: "none", stroke: line[1],
                                      "stroke-width": 2, "data-series": line[0]}));
      var last = n ? " " + values[n - 1] + " ms" : "";
      svg.appendChild(el("text", {x: width - right - 110 * (i + 1), y: height - 8, fill: line[1]}, line[0] + last));
    });
    if (!n) svg.appendChild(el("text", {x: left + 10, y: height / 2, fill: "#666"}, "no turn yet"));
    target.replaceChildren(svg);
  }

  function refresh() {
    var target = place();
    if (!target) return;
    fetch("./voice/chart.json", {cache: "no-store"})
      .then(function (response) { return response.json(); })
      .then(function (data) { draw(target, data); })
      .catch(function () { /* the run may have ended: keep the last chart */ });
  }

  window.setInterval(refresh, 2000);
  new MutationObserver(function () { if (onTab()) place(); }).observe(document.body, {childList: true, subtree: true});
  refresh();
})();
