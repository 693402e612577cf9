// The console's page script: local times, sortable tables, charts, live traffic.
import { localizeTimes } from "./time.js";
import { sortableTables } from "./tables.js";
import { drawAll } from "./charts.js";
import { liveTraffic } from "./traffic.js";

function start() {
  localizeTimes();
  sortableTables();
  if (window.uPlot) {
    drawAll();
    liveTraffic();
  }
}

if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", start);
} else {
  start();
}
