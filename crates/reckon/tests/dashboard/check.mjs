// Drives the dashboard in headless Debian chromium (playwright-core): loads the page,
// checks the chart's points, posts late events and times each until the page marks
// its window revised, clicks for the history, and moves the "as known at" slider.
// Prints one JSON line for crates/reckon/tests/dashboard.rs (and the bench).
//
//   node check.mjs URL '{"points":24,"late":[{"start":…,"body":…}],"shots":"docs"}'
//   (also "select", "history", "steps":[{"path","body","until"}], "values":{name: expr},
//   "shot": a file name for the one screenshot, at the end, instead of the two others)
import { createRequire } from "node:module";
const require = createRequire(process.env.RECKON_NODE_MODULES + "/");
const { chromium } = require("playwright-core");
const [url, argText] = process.argv.slice(2);
const arg = JSON.parse(argText);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});
const out = {};
try {
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  const t0 = Date.now();
  await page.goto(url + "/");
  if (arg.select) {
    // Another pipeline and key than the first.
    const { pipe, key } = arg.select;
    await page.waitForFunction((p) => [...document.querySelector("#pipe").options].some((o) => o.value === p), pipe);
    await page.selectOption("#pipe", pipe);
    await page.waitForFunction((k) => [...document.querySelector("#key").options].some((o) => o.value === k), key);
    await page.selectOption("#key", key);
  }
  await page.waitForFunction((a) => {
    const r = window.reckon;
    return r && r.points() >= a.points && (!a.select || (r.state.pipe === a.select.pipe && r.state.key === a.select.key));
  }, arg, { timeout: 30000 });
  // Drawn: uPlot's canvas is there with the points' data.
  await page.waitForSelector("#chart canvas");
  out.first_paint_ms = Date.now() - t0;
  out.points = await page.evaluate(() => window.reckon.points());
  out.plotted = await page.evaluate(() => window.reckon.state.plot.data[1].filter((v) => v != null).length);
  out.revised_before = await page.evaluate(() => window.reckon.state.plot.data[2].filter((v) => v != null).length);
  if (arg.shots && !arg.shot) await page.screenshot({ path: arg.shots + "/dashboard.png", fullPage: true });
  // The change feed is open (the server follows it once it has answered).
  await page.waitForFunction(() => window.reckon.state.live, null, { timeout: 10000 });
  out.latency_ms = [];
  for (const late of arg.late || []) {
    const sent = Date.now();
    const r = await fetch(url + late.path, { method: "POST", body: late.body });
    if (!r.ok) throw Error("POST " + late.path + ": " + r.status + " " + (await r.text()));
    const at = await page.waitForFunction(
      (s) => { const r = window.reckon.revised().filter((x) => x.start === s); return r.length && r[r.length - 1].at; },
      late.start, { timeout: 5000, polling: "raf" });
    out.latency_ms.push((await at.jsonValue()) - sent);
  }
  out.revised_after = await page.evaluate(() => window.reckon.state.plot.data[2].filter((v) => v != null).length);
  // Steps: a POST, then the time until `until` (an expression in the page) holds.
  out.steps_ms = [];
  // A step may instead `do` something in the page (an expression), such as a click,
  // or `wait` for the test: a line {"waiting": what} out, then one line in.
  for (const step of arg.steps || []) {
    if (step.wait) {
      console.log(JSON.stringify({ waiting: step.wait }));
      await new Promise((r) => process.stdin.once("data", r));
      process.stdin.pause();
    }
    const sent = Date.now();
    if (step.do) await page.evaluate(step.do);
    if (step.path) {
      const r = await fetch(url + step.path, { method: "POST", body: step.body });
      if (!r.ok) throw Error("POST " + step.path + ": " + r.status + " " + (await r.text()));
    }
    if (step.until) await page.waitForFunction(step.until, null, { timeout: step.timeout || 10000, polling: "raf" });
    out.steps_ms.push(Date.now() - sent);
  }
  if (arg.history) {
    // Click the revised point: its revision history appears.
    const i = await page.evaluate((s) => window.reckon.state.plot.data[0].indexOf(Date.parse(s) / 1000), arg.history);
    const box = await page.evaluate((i) => {
      const u = window.reckon.state.plot, r = u.over.getBoundingClientRect();
      return { x: r.left + u.valToPos(u.data[0][i], "x"), y: r.top + u.valToPos(u.data[1][i], "y") };
    }, i);
    await page.mouse.move(box.x, box.y);
    await page.mouse.click(box.x, box.y);
    await page.waitForSelector("#detail table", { timeout: 15000 });
    if (arg.select) await page.waitForFunction(() => document.querySelector("#detail p"), null, { timeout: 15000 });
    out.history_rows = await page.evaluate(() => document.querySelectorAll("#detail table tr").length - 1);
    out.detail = await page.evaluate(() => document.querySelector("#detail").innerText);
    if (arg.shots && !arg.shot) await page.screenshot({ path: arg.shots + "/dashboard-history.png", fullPage: true });
    // As known at the start: the revised window shows its first version again.
    await page.evaluate(() => { const s = document.querySelector("#asof"); s.value = "0"; s.dispatchEvent(new Event("input")); });
    await page.waitForFunction((s) => { const w = window.reckon.state.wins.get(s); return window.reckon.state.asOf && w; }, arg.history);
    await new Promise((r) => setTimeout(r, 300));
    out.as_of_version = await page.evaluate((s) => { const w = window.reckon.state.wins.get(s); return w && w.e.version; }, arg.history);
    out.now_version = arg.now_version;
  }
  // What the test asks of the page at the end: name → expression.
  out.values = {};
  for (const [name, expr] of Object.entries(arg.values || {})) out.values[name] = await page.evaluate(expr);
  if (arg.shots && arg.shot) await page.screenshot({ path: arg.shots + "/" + arg.shot, fullPage: true });
  out.overview = await page.evaluate(() => document.querySelector("#pipes").innerText);
  out.errors = errors;
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
