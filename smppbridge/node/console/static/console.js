// The overview's chart: messages per second of the last 15 minutes, read from the
// operator API's /stats (with the console's cookie) every 2 seconds and drawn with
// uPlot. Every node of the response is summed per second. After each draw the chart
// element carries data-points (seconds drawn) and data-submitted (submits in them).
(function () {
  "use strict";
  const el = document.getElementById("chart");
  const status = document.getElementById("chart-status");
  if (!el || typeof uPlot === "undefined") return;
  const url = el.dataset.statsUrl;
  const zone = el.dataset.tz || "UTC";
  const EVERY_MS = 2000;
  let plot = null;

  function css(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  // times in the console's zone (uPlot.tzDate), as the pages show them
  const local = (ts) => uPlot.tzDate(new Date(ts * 1e3), zone);
  const hms = uPlot.fmtDate("{HH}:{mm}:{ss}");
  const full = uPlot.fmtDate("{YYYY}-{MM}-{DD} {HH}:{mm}:{ss}");

  function options() {
    const axis = { stroke: css("--muted"), grid: { stroke: css("--line"), width: 1 },
                   ticks: { stroke: css("--line"), width: 1 } };
    const line = (label, color) => ({ label: label, stroke: css(color), width: 2,
                                      value: (u, v) => (v == null ? "–" : v + "/s") });
    return {
      width: Math.max(300, el.clientWidth),
      height: 280,
      tzDate: local,
      scales: { y: { range: (u, min, max) => [0, Math.max(5, max)] } },
      axes: [
        Object.assign({ space: 70, incrs: [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900],
                        values: (u, splits) => splits.map((ts) => hms(local(ts))) }, axis),
        Object.assign({ label: "per second" }, axis),
      ],
      series: [
        { label: "time", value: (u, ts) => (ts == null ? "–" : full(local(ts))) },
        line("submitted", "--chart-submitted"),
        line("delivered", "--chart-delivered"),
        line("failed", "--chart-failed"),
        line("refused", "--chart-refused"),
      ],
    };
  }

  function columns(body) {
    const perSecond = new Map();
    for (const node of body.nodes) {
      for (const s of node.seconds) {
        const at = Math.floor(Date.parse(s.at) / 1000);
        const row = perSecond.get(at) || [0, 0, 0, 0];
        let refused = 0;
        for (const reason in s.refused) refused += s.refused[reason];
        row[0] += s.submitted; row[1] += s.delivered; row[2] += s.failed; row[3] += refused;
        perSecond.set(at, row);
      }
    }
    const ats = Array.from(perSecond.keys()).sort((a, b) => a - b);
    const data = [ats, [], [], [], []];
    for (const at of ats) {
      const row = perSecond.get(at);
      for (let i = 0; i < 4; i++) data[i + 1].push(row[i]);
    }
    return data;
  }

  function draw(data) {
    if (plot === null) {
      el.textContent = "";
      plot = new uPlot(options(), data, el);
    } else {
      plot.setData(data);
    }
    el.dataset.points = String(data[0].length);
    el.dataset.submitted = String(data[1].reduce((a, b) => a + b, 0));
  }

  function say(text) { if (status) status.textContent = text; }

  async function refresh() {
    try {
      const r = await fetch(url, { credentials: "same-origin", headers: { accept: "application/json" } });
      if (r.status === 401 || r.status === 403) { say("Log in again to see the chart."); return; }
      if (!r.ok) throw new Error("HTTP " + r.status);
      draw(columns(await r.json()));
      say("");
    } catch (e) {
      say("The chart could not be updated (" + e.message + "); retrying.");
    }
    setTimeout(refresh, EVERY_MS);
  }

  new ResizeObserver(() => {
    if (plot !== null) plot.setSize({ width: Math.max(300, el.clientWidth), height: 280 });
  }).observe(el);
  refresh();
})();
