// Opens a node's status page in Debian's chromium (driven by playwright-core) and checks what an
// operator sees: the page loads, lists every node of the deployment, shows each node up or down
// as expected (a killed node as DOWN), and its raw JSON is one link away.
//
// node status_page.mjs --url http://127.0.0.1:8080/ --nodes 1,2,3,4,5,6 [--down 5]
//      [--screenshot FILE] [--timeout-ms 60000]
// Exit 0 when everything was seen within the timeout; 1 with the reason otherwise.

import { chromium } from "playwright-core";

function options(argv) {
  const parsed = { down: [], timeoutMs: 60000, screenshot: null };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (value === undefined) throw new Error(`${flag} needs a value`);
    if (flag === "--url") parsed.url = value;
    else if (flag === "--nodes") parsed.nodes = value.split(",").map(Number);
    else if (flag === "--down") parsed.down = value.split(",").map(Number);
    else if (flag === "--screenshot") parsed.screenshot = value;
    else if (flag === "--timeout-ms") parsed.timeoutMs = Number(value);
    else throw new Error(`unknown flag ${flag}`);
  }
  if (!parsed.url || !parsed.nodes) throw new Error("--url and --nodes are required");
  return parsed;
}

async function main() {
  const want = options(process.argv.slice(2));
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    // As root chromium needs --no-sandbox; the rest keep it off a closed network.
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    timeout: want.timeoutMs,
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const errors = [];
    page.on("pageerror", (error) => errors.push(String(error)));
    await page.goto(want.url, { timeout: want.timeoutMs });
    const expected = want.nodes.map((id) => ({ id, up: !want.down.includes(id) }));
    // The page refreshes itself every 2 s: wait until it shows every node as expected.
    await page.waitForFunction((expected) => expected.every(({ id, up }) => {
      const row = document.querySelector(`tr[data-node="${id}"]`);
      return row !== null && row.dataset.up === String(up);
    }), expected, { timeout: want.timeoutMs, polling: 250 });
    const listed = await page.$$eval("tr[data-node]", (rows) => rows.map((r) => Number(r.dataset.node)));
    const unexpected = listed.filter((id) => !want.nodes.includes(id));
    if (unexpected.length > 0 || listed.length !== want.nodes.length) {
      throw new Error(`the page lists nodes ${listed}, expected ${want.nodes}`);
    }
    for (const id of want.down) {
      const text = await page.textContent(`tr[data-node="${id}"]`);
      if (!text.includes("DOWN")) throw new Error(`node ${id}'s row does not say DOWN: ${text}`);
    }
    const health = await page.textContent("#health");
    if (want.down.length > 0 && !/PROBLEM/.test(health)) {
      throw new Error(`a node is down but the badge says ${health}`);
    }
    const problems = await page.textContent("#problems");
    for (const id of want.down) {
      if (!problems.includes(`node ${id} `)) throw new Error(`problems do not name node ${id}: ${problems}`);
    }
    const raw = await page.getAttribute('a[href="/api/v1/deployment"]', "href");
    const answer = await page.request.get(new URL(raw, want.url).toString(), { timeout: want.timeoutMs });
    const json = await answer.json();
    if (!Array.isArray(json.pools)) throw new Error("the raw JSON link gives no pools");
    if (want.screenshot) await page.screenshot({ path: want.screenshot, fullPage: true });
    if (errors.length > 0) throw new Error(`script errors on the page: ${errors.join("; ")}`);
    console.log(`status page: ${listed.length} nodes listed, down: [${want.down}], badge "${health}"`);
  } finally {
    await browser.close();
  }
}

main().catch((error) => {
  console.error(`status page check failed: ${error.message || error}`);
  process.exit(1);
});
