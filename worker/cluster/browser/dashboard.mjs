// The dashboard in headless Chromium (Debian's, driven by playwright-core), against two
// `weir run` processes that worker/cli/tests/cli.rs started: a windowed SQL job with
// checkpoints (JOB_URL, JOB_ID), and the same job whose printed output nobody reads, so its
// sink blocks and the operators before it are backpressured, served with a REST token
// (SLOW_URL, SLOW_TOKEN), and a third copy of the first to stop with a savepoint
// (STOP_URL, STOP_ID). Numbered steps, each with its assertion; a screenshot of each
// page goes to SCREENSHOTS. Exits non-zero on the first failed step.
//
//   PLAYWRIGHT_MODULES=<dir with playwright-core> JOB_URL=... JOB_ID=... SLOW_URL=...
//   SLOW_TOKEN=... STOP_URL=... STOP_ID=... CHECKPOINT_INTERVAL_MS=... SAVEPOINTS_DIR=/path SCREENSHOTS=/dir node dashboard.mjs

import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const require = createRequire(join(env("PLAYWRIGHT_MODULES"), "noop.js"));
const { chromium } = require("playwright-core");

const JOB_URL = env("JOB_URL");
const JOB_ID = env("JOB_ID");
const SLOW_URL = env("SLOW_URL");
const SLOW_TOKEN = env("SLOW_TOKEN");
const INTERVAL = Number(env("CHECKPOINT_INTERVAL_MS"));
const SAVEPOINTS_DIR = env("SAVEPOINTS_DIR");
const SHOTS = env("SCREENSHOTS");
const STOP_URL = env("STOP_URL");
const STOP_ID = env("STOP_ID");

let step = 0;
async function the(what, f) {
  step += 1;
  const started = Date.now();
  await f();
  console.log(`${step}. ${what} (${Date.now() - started} ms)`);
}

async function shot(page, name) {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

async function rest(path) {
  const r = await fetch(`${JOB_URL}/${path}`);
  assert.equal(r.status, 200, `GET ${path}`);
  return r.json();
}

// A fresh profile; without the networking flags Chromium keeps calling home on a closed network.
const profile = mkdtempSync(join(tmpdir(), "weir-chromium-"));
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
  viewport: { width: 1360, height: 860 },
});
const page = browser.pages()[0] || (await browser.newPage());
const errors = [];
// Once the job is cancelled, `weir run` exits and the page's refreshes find no server.
let serverGone = false;
page.on("pageerror", (e) => errors.push(e.message));
page.on("console", (m) => {
  // Refused requests are the token test's point, not script errors.
  if (m.type() !== "error" || /status of 401/.test(m.text())) return;
  if (serverGone && /ERR_CONNECTION_REFUSED/.test(m.text())) return;
  errors.push(m.text());
});

try {
  const details = await rest(`jobs/${JOB_ID}`);
  const plan = (await rest(`jobs/${JOB_ID}/plan`)).plan;

  await the("the overview lists the running job and the TaskManager", async () => {
    await page.goto(`${JOB_URL}/`);
    const row = page.locator(`#jobs-table tr[data-job="${JOB_ID}"]`);
    await row.waitFor();
    assert.match(await row.innerText(), /RUNNING/);
    assert.equal((await page.locator('[data-testid="tm-count"] .card-value').innerText()).trim(), "1");
    assert.match(await page.locator("#tm-table").innerText(), /local/);
    await shot(page, "1-overview");
  });

  await the("the job's graph shows every operator chain with records flowing and the SQL plan", async () => {
    await page.locator(`#jobs-table tr[data-job="${JOB_ID}"] a`).click();
    await page.waitForURL(new RegExp(`#/jobs/${JOB_ID}`));
    const nodes = page.locator("svg.graph g.node");
    await nodes.first().waitFor();
    assert.equal(await nodes.count(), plan.nodes.length, "one box per vertex");
    for (const n of plan.nodes) {
      const box = page.locator(`svg.graph g.node[data-vertex="${n.id}"]`);
      assert.equal(await box.count(), 1, `a box for ${n.description}`);
      assert.match(await box.locator("title").textContent(), new RegExp(n.description.split(" -> ")[0].replace(/[()[\]]/g, ".")));
    }
    // Every box counts records per second once a second has been measured.
    await page.waitForFunction(
      () =>
        [...document.querySelectorAll("svg.graph g.node")].every((g) =>
          [...g.querySelectorAll(".node-rate")].some((t) => /[1-9]/.test(t.textContent)),
        ),
      null,
      { timeout: 20000 },
    );
    const edges = page.locator("svg.graph g.edge");
    const expected = plan.nodes.reduce((a, n) => a + (n.inputs || []).length, 0);
    assert.ok(expected > 0, "the job has an edge between tasks");
    assert.equal(await edges.count(), expected);
    const strategies = await edges.evaluateAll((es) => es.map((e) => e.dataset.partitioning));
    assert.ok(strategies.includes("HASH"), `the window's input is hashed by key: ${strategies}`);
    const explain = await page.locator("#sql-explain").innerText();
    assert.match(explain, /Window|TUMBLE|Tumble/i, "the SQL plan is shown next to the graph");
    await shot(page, "2-job-graph");
  });

  await the("a vertex's subtasks are listed with their counters", async () => {
    const v = details.vertices[details.vertices.length - 1];
    await page.locator(`svg.graph g.node[data-vertex="${v.id}"]`).click();
    const rows = page.locator("#subtask-table tbody tr");
    await rows.first().waitFor();
    assert.equal(await rows.count(), v.parallelism);
    assert.match(await rows.first().innerText(), /RUNNING/);
    await shot(page, "3-subtasks");
  });

  await the("a completed checkpoint appears in the history within its interval", async () => {
    await page.locator('.tabs a[data-tab="checkpoints"]').click();
    const before = (await rest(`jobs/${JOB_ID}/checkpoints`)).counts.completed;
    const opened = Date.now();
    // The next checkpoint completes within an interval; the page shows it at its next refresh.
    const refresh = (await rest("config"))["refresh-interval"];
    await page.waitForFunction(
      (n) => {
        const card = document.querySelector('[data-testid="ckpt-completed"] .card-value');
        return card && Number(card.textContent.replace(/,/g, "")) > n && document.querySelector("#checkpoint-history tr.ckpt-COMPLETED");
      },
      before,
      { timeout: INTERVAL + 2 * refresh + 5000 },
    );
    const waited = Date.now() - opened;
    assert.ok(waited <= INTERVAL + 2 * refresh + 5000, `shown after ${waited} ms`);
    const row = page.locator("#checkpoint-history tr.ckpt-COMPLETED").first();
    assert.match(await row.innerText(), /checkpoint/);
    assert.match(await row.innerText(), /\d+(\.\d)? (B|KiB|MiB)/, "its size");
    await row.click();
    await page.getByRole("heading", { name: /Checkpoint #\d+/ }).waitFor();
    await shot(page, "4-checkpoints");
  });

  await the("a checkpoint's breakdown shows every operator chain and, opened, its subtasks", async () => {
    const job = await rest(`jobs/${JOB_ID}`);
    const tasks = page.locator("#checkpoint-tasks tbody tr");
    await tasks.first().waitFor();
    assert.equal(await tasks.count(), job.vertices.length);
    for (const v of job.vertices) {
      const text = await page.locator(`#checkpoint-tasks tr[data-vertex="${v.id}"]`).innerText();
      assert.match(text, new RegExp(`${v.parallelism}/${v.parallelism}`), `every subtask of ${v.name} acknowledged: ${text}`);
    }
    // The last chain holds the windows' state.
    const last = job.vertices[job.vertices.length - 1];
    await page.locator(`#checkpoint-tasks tr[data-vertex="${last.id}"]`).click();
    const subtasks = page.locator("#checkpoint-subtasks tbody tr");
    await subtasks.first().waitFor();
    assert.equal(await subtasks.count(), last.parallelism);
    const id = Number((await page.getByRole("heading", { name: /Checkpoint #\d+/ }).innerText()).match(/#(\d+)/)[1]);
    const breakdown = await rest(`jobs/${JOB_ID}/checkpoints/details/${id}/subtasks/${last.id}`);
    const written = breakdown.subtasks.reduce((n, s) => n + s.checkpointed_size, 0);
    assert.equal(written, breakdown.checkpointed_size, "the subtasks' sizes add up to the chain's");
    for (const [i, s] of breakdown.subtasks.entries()) {
      assert.equal(s.status, "completed");
      const text = await subtasks.nth(i).innerText();
      assert.match(text, /acknowledged/);
      assert.match(text, /aligned/);
      assert.match(text, /\d+(\.\d)? (B|KiB|MiB)/, `its size: ${text}`);
    }
    await shot(page, "4b-checkpoint-breakdown");
  });

  let savepoint;
  await the("the Savepoint button, confirmed, shows where the savepoint was written", async () => {
    await page.locator("#btn-savepoint").click();
    await page.locator("#confirm-dialog[open]").waitFor();
    await shot(page, "5-savepoint-confirm");
    await page.locator("#confirm-ok").click();
    const notice = page.locator("#notice.ok");
    await notice.waitFor({ timeout: 30000 });
    const text = await notice.innerText();
    const m = text.match(/Savepoint completed: (\S+)/);
    assert.ok(m, text);
    savepoint = m[1];
    assert.ok(savepoint.includes(SAVEPOINTS_DIR), `${savepoint} is under ${SAVEPOINTS_DIR}`);
    const dir = savepoint.replace(/^file:\/\//, "");
    assert.ok(existsSync(join(dir, "_metadata")), `${dir}/_metadata exists`);
    await page.waitForFunction((p) => document.querySelector("#latest-savepoint")?.textContent.includes(p), savepoint);
    await shot(page, "5-savepoint");
  });

  await the("exceptions and configuration tabs", async () => {
    await page.locator('.tabs a[data-tab="exceptions"]').click();
    await page.locator("#no-exceptions").waitFor();
    await shot(page, "6-exceptions");
    await page.locator('.tabs a[data-tab="configuration"]').click();
    await page.getByText("execution.checkpointing.interval").waitFor();
    await shot(page, "7-job-configuration");
  });

  await the("the TaskManager page shows its memory budget and resident memory", async () => {
    await page.goto(`${JOB_URL}/#/taskmanagers/local`);
    const rss = page.locator('[data-testid="tm-rss"] .card-value');
    await rss.waitFor();
    assert.match(await rss.innerText(), /MiB|GiB/);
    await page.getByText("Memory budget (taskmanager.memory.*)").waitFor();
    await shot(page, "8-taskmanager");
  });

  await the("on a phone in dark mode the graph stacks top to bottom", async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.emulateMedia({ colorScheme: "dark" });
    await page.goto(`${JOB_URL}/#/jobs/${JOB_ID}/graph`);
    await page.locator("svg.graph g.node").first().waitFor();
    const boxes = await page.locator("svg.graph g.node").evaluateAll((gs) => gs.map((g) => g.getBoundingClientRect().top));
    assert.ok(new Set(boxes.map(Math.round)).size === boxes.length, "one box per row");
    const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    assert.equal(bg, "rgb(13, 17, 23)", "dark background");
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 1, `no sideways scrolling (${overflow}px)`);
    await shot(page, "9-phone-dark-graph");
    await page.setViewportSize({ width: 1360, height: 860 });
    await page.emulateMedia({ colorScheme: "light" });
  });

  await the("with a REST token the page asks once and keeps it for the tab", async () => {
    await page.goto(`${SLOW_URL}/`);
    const dialog = page.locator("#token-dialog[open]");
    await dialog.waitFor();
    await shot(page, "10-token");
    await page.locator("#token-input").fill("wrong-token");
    await page.locator("#token-form button").click();
    await page.locator("#token-error:not([hidden])").waitFor();
    await page.locator("#token-input").fill(SLOW_TOKEN);
    await page.locator("#token-form button").click();
    await page.locator("#jobs-table tbody tr").first().waitFor();
    await page.reload();
    await page.locator("#jobs-table tbody tr").first().waitFor();
    assert.equal(await page.locator("#token-dialog[open]").count(), 0, "not asked again in this tab");
  });

  await the("a job with a slow sink shows the operator before it backpressured", async () => {
    await page.locator("#jobs-table tbody tr a").first().click();
    await page.waitForSelector('svg.graph g.node[data-backpressure="high"]', { timeout: 30000 });
    const high = page.locator('svg.graph g.node[data-backpressure="high"]');
    assert.match(await high.first().locator(".badge-text").textContent(), /BACKPRESSURED/);
    await shot(page, "11-backpressure");
  });

  await the("Stop with savepoint, confirmed, shows the savepoint and ends the job", async () => {
    await page.goto(`${STOP_URL}/#/jobs/${STOP_ID}/graph`);
    await page.locator("#btn-stop:not([disabled])").waitFor();
    await page.locator("#btn-stop").click();
    await page.locator("#confirm-dialog[open]").waitFor();
    serverGone = true;
    await page.locator("#confirm-ok").click();
    const notice = page.locator("#notice.ok");
    await notice.waitFor({ timeout: 30000 });
    const m = (await notice.innerText()).match(/Stop with savepoint completed: (\S+)/);
    assert.ok(m, await notice.innerText());
    assert.ok(m[1].includes(SAVEPOINTS_DIR), `${m[1]} is under ${SAVEPOINTS_DIR}`);
    assert.ok(existsSync(join(m[1].replace(/^file:\/\//, ""), "_metadata")));
    await shot(page, "12-stopped-with-savepoint");
    serverGone = false;
  });

  await the("Cancel, confirmed, cancels the job", async () => {
    await page.goto(`${JOB_URL}/#/jobs/${JOB_ID}/graph`);
    await page.locator("#btn-cancel:not([disabled])").waitFor();
    await page.locator("#btn-cancel").click();
    await page.locator("#confirm-dialog[open]").waitFor();
    await shot(page, "13-cancel-confirm");
    serverGone = true;
    await page.locator("#confirm-ok").click();
    // The page shows the cancel under way (or already done), and the job ends: `weir run`
    // then exits, taking its REST API with it (the caller checks the process ended).
    await page.waitForFunction(() => /Cancelling|CANCELED|CANCELLING/.test(document.querySelector("#main").innerText), null, { timeout: 10000 });
    await shot(page, "13-cancelled");
    const deadline = Date.now() + 20000;
    for (;;) {
      const state = await rest(`jobs/${JOB_ID}`).then((j) => j.state, () => "gone");
      if (state === "CANCELED" || state === "gone") break;
      assert.ok(["CANCELLING", "RUNNING"].includes(state) && Date.now() < deadline, `state ${state}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  });

  assert.deepEqual(errors, [], "no script errors on the page");
  console.log(`screenshots: ${SHOTS}`);
} catch (e) {
  await shot(page, `failed-step-${step + 1}`).catch(() => {});
  console.error(`step ${step + 1} failed: ${e.stack || e}`);
  if (errors.length) console.error(`page errors: ${errors.join("\n")}`);
  process.exitCode = 1;
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
