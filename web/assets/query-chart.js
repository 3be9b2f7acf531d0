// The query console's chart: Chart.js (npm, pinned), loaded only when the Chart tab is opened.
import {
  Chart, BarController, LineController, ScatterController, BarElement, LineElement, PointElement, CategoryScale,
  LinearScale, Tooltip, Legend,
} from "chart.js";

Chart.register(BarController, LineController, ScatterController, BarElement, LineElement, PointElement, CategoryScale,
  LinearScale, Tooltip, Legend);

let chart;

export function clearChart() {
  if (chart) { chart.destroy(); chart = null; }
}

// Draw rows as a bar, line or scatter chart of column y against column x.
export function drawChart(canvas, { type, rows, x, y, xLabel, yLabel }) {
  clearChart();
  const number = (v) => (v === null || v === undefined || v === "" ? null : Number(v));
  const scatter = type === "scatter";
  const points = scatter ? rows.map((r) => ({ x: number(r[x]), y: number(r[y]) })).filter((p) => p.x !== null && p.y !== null)
    : rows.map((r) => number(r[y]));
  chart = new Chart(canvas, {
    type,
    data: {
      labels: scatter ? undefined : rows.map((r) => (r[x] === null ? "NULL" : String(r[x]))),
      datasets: [{ label: yLabel, data: points, backgroundColor: "rgba(31, 95, 191, 0.55)", borderColor: "#1f5fbf", borderWidth: 1.5, pointRadius: scatter ? 3 : 2 }],
    },
    options: {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      scales: {
        x: { type: scatter ? "linear" : "category", title: { display: true, text: xLabel } },
        y: { type: "linear", title: { display: true, text: yLabel }, beginAtZero: type === "bar" },
      },
      plugins: { legend: { display: false } },
    },
  });
  return chart;
}
