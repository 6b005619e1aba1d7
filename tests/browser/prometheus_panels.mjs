// Opens every panel of the Grafana dashboard deploy/grafana/roster.json in Prometheus's own
// graph page (the classic UI Debian's prometheus serves at /classic/graph), one page per
// panel with one graph per query, in Debian's chromium (playwright-core), and saves a PNG of
// each; prints, per query, what /api/v1/query answers now (series and values), and any error
// the page shows. scripts/dashboard-look runs it against a Prometheus scraping `roster demo`.
//
// node tests/browser/prometheus_panels.mjs --dashboard deploy/grafana/roster.json --prometheus http://127.0.0.1:9090
//      --out /tmp/roster-panels [--range 15m]

import { chromium } from "playwright-core";
import { readFileSync, mkdirSync } from "node:fs";

function options(argv) {
  const parsed = { range: "15m" };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (value === undefined) throw new Error(`${flag} needs a value`);
    if (flag === "--dashboard") parsed.dashboard = value;
    else if (flag === "--prometheus") parsed.prometheus = value;
    else if (flag === "--out") parsed.out = value;
    else if (flag === "--range") parsed.range = value;
    else throw new Error(`unknown flag ${flag}`);
  }
  if (!parsed.dashboard || !parsed.prometheus || !parsed.out) {
    throw new Error("--dashboard, --prometheus and --out are required");
  }
  return parsed;
}

function legend(format, metric) {
  return (format || "").replace(/\{\{\s*(\w+)\s*\}\}/g, (_, name) => metric[name] ?? "");
}

async function instant(prometheus, expr) {
  const url = `${prometheus}/api/v1/query?query=${encodeURIComponent(expr)}`;
  const answer = await (await fetch(url, { signal: AbortSignal.timeout(10000) })).json();
  if (answer.status !== "success") return `error: ${answer.error}`;
  const series = answer.data.result;
  if (series.length === 0) return "empty";
  return series;
}

async function main() {
  const want = options(process.argv.slice(2));
  const dashboard = JSON.parse(readFileSync(want.dashboard, "utf8"));
  mkdirSync(want.out, { recursive: true });
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    timeout: 60000,
  });
  try {
    for (const panel of dashboard.panels) {
      const tab = panel.type === "table" || panel.type === "stat" ? 1 : 0;
      const params = panel.targets.map((target, i) =>
        `g${i}.expr=${encodeURIComponent(target.expr)}&g${i}.tab=${tab}` +
        `&g${i}.range_input=${want.range}`).join("&");
      const url = `${want.prometheus}/classic/graph?${params}`;
      const page = await browser.newPage({ viewport: { width: 1300, height: 500 + 450 * panel.targets.length } });
      const errors = [];
      // Debian's classic page loads one vendored script as a classic one (a SyntaxError on
      // `export`); the graphs do not use it. Any other error is reported.
      page.on("pageerror", (error) => {
        if (!String(error).includes("Unexpected token 'export'")) errors.push(String(error));
      });
      await page.goto(url, { timeout: 30000, waitUntil: "networkidle" });
      await page.waitForTimeout(1500);
      const file = `${want.out}/${String(panel.id).padStart(2, "0")}-${panel.title.replace(/[^A-Za-z0-9]+/g, "-")}.png`;
      await page.screenshot({ path: file, fullPage: true });
      const shown = await page.$$eval(".alert-danger, .alert-warning", (nodes) =>
        nodes.filter((n) => n.offsetParent !== null).map((n) => n.textContent.trim()).filter(Boolean));
      await page.close();
      console.log(`panel ${panel.id} (${panel.type}) ${panel.title}: ${file}`);
      for (const message of [...errors, ...shown]) console.log(`  page says: ${message}`);
      for (const target of panel.targets) {
        const result = await instant(want.prometheus, target.expr);
        console.log(`  ${target.expr}`);
        if (typeof result === "string") {
          console.log(`    ${result}`);
          continue;
        }
        for (const series of result) {
          const value = Number(series.value[1]);
          console.log(`    ${legend(target.legendFormat, series.metric) || JSON.stringify(series.metric)} = ${Number.isInteger(value) ? value : value.toPrecision(4)}`);
        }
      }
    }
  } finally {
    await browser.close();
  }
}

main().catch((error) => {
  console.error(String(error.stack || error));
  process.exit(1);
});
