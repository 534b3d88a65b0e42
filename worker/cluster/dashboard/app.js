// The dashboard's router and live updates: `#/overview`, `#/jobs/:id/:tab`,
// `#/jobs/:id/vertices/:vid`, `#/taskmanagers[/:id]`, `#/config`. The current page is fetched
// and drawn again every `refresh-interval` (from `GET /config`); a page that is replaced
// stops its timer.

import { get, post, patch, paths, awaitSavepoint, ApiError } from "./api.js";
import { drawGraph } from "./graph.js";
import {
  h,
  fmt,
  renderOverview,
  renderTaskManagers,
  renderTaskManager,
  renderConfig,
  renderJobHeader,
  renderTabs,
  renderSubtasks,
  renderCheckpoints,
  renderExceptions,
  renderJobConfig,
} from "./pages.js";

const main = document.getElementById("main");
let dashboard = { "refresh-interval": 3000 };
let generation = 0;
// Per job: the savepoint/stop/cancel outcome shown above its tabs, kept across refreshes.
const notices = new Map();
// The plan (and EXPLAIN) per job: fetched once, it does not change while the job runs.
const plans = new Map();
// The checkpoint opened in the history, and the vertex opened in its breakdown, per job.
const openCheckpoint = new Map();
const openCheckpointVertex = new Map();

function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  return parts.length ? parts : ["overview"];
}

function setNav(section) {
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.nav === section);
}

function showError(e) {
  main.replaceChildren(
    h("div", { class: "page" }, h("h1", {}, "Cannot load this page"), h("p", { class: "error", id: "page-error" }, e.message)),
  );
}

/** The header's indicator: live, or showing the last answer (`weir run` ends with its job). */
function setLive(live) {
  const el = document.getElementById("live");
  el.classList.toggle("stale", !live);
  el.textContent = live ? "live" : "offline";
  el.title = live ? "Updates every few seconds" : "The server does not answer: this is its last answer";
}

/** Renders the page for the current hash now and then every refresh interval. */
async function show() {
  const my = ++generation;
  const parts = route();
  const tick = async () => {
    if (my !== generation) return;
    try {
      const node = await page(parts);
      if (my !== generation) return;
      // Keep the scroll position and an open <details> across refreshes.
      const y = window.scrollY;
      main.replaceChildren(node);
      window.scrollTo(0, y);
      setLive(true);
    } catch (e) {
      if (my !== generation) return;
      if (e instanceof ApiError && e.status === 404) showError(e);
      else if (!main.querySelector(".page")) showError(e);
      else setLive(false);
    }
    setTimeout(tick, dashboard["refresh-interval"] || 3000);
  };
  await tick();
}

async function page(parts) {
  const [section, id, tab, sub] = parts;
  setNav(section === "jobs" ? "overview" : section);
  if (section === "overview") {
    const [overview, jobs, tms] = await Promise.all([get(paths.overview), get(paths.jobsOverview), get(paths.taskmanagers)]);
    document.title = "Weir · Overview";
    return renderOverview(overview, jobs, tms);
  }
  if (section === "taskmanagers" && id) {
    document.title = `Weir · ${id}`;
    return renderTaskManager(await get(paths.taskmanager(id)));
  }
  if (section === "taskmanagers") {
    document.title = "Weir · TaskManagers";
    return renderTaskManagers(await get(paths.taskmanagers));
  }
  if (section === "config") {
    document.title = "Weir · Configuration";
    return renderConfig(await get(paths.jobmanagerConfig), dashboard);
  }
  if (section === "jobs" && id) {
    return jobPage(id, tab === "vertices" ? "subtasks" : tab || "graph", tab === "vertices" ? sub : undefined);
  }
  throw new ApiError(404, `no page ${location.hash}`);
}

// --- the job page ---------------------------------------------------------------------

/** Measures each vertex: rates, time shares and watermark from its subtasks. */
async function vertexStats(jid, job) {
  const stats = new Map();
  await Promise.all(
    job.vertices.map(async (v) => {
      const [d, bp] = await Promise.all([get(paths.vertex(jid, v.id)), get(paths.backpressure(jid, v.id))]);
      const sum = (f) => d.subtasks.reduce((a, s) => a + f(s), 0);
      const n = Math.max(1, bp.subtasks.length);
      const avg = (f) => bp.subtasks.reduce((a, s) => a + f(s), 0) / n;
      const wms = d.subtasks.map((s) => s.weir.currentInputWatermark);
      stats.set(v.id, {
        inRate: sum((s) => s.weir.recordsInPerSecond),
        outRate: sum((s) => s.weir.recordsOutPerSecond),
        // Shares are the subtasks' average (they add up to 1); the level is the worst subtask's.
        backpressure: avg((s) => s.ratio),
        idle: avg((s) => s.idleRatio),
        busy: avg((s) => s.busyRatio),
        level: bp["backpressure-level"],
        watermark: wms.length ? Math.min(...wms) : null,
        stateEntries: sum((s) => s.weir.stateEntries),
        stateSize: d.weir ? d.weir.checkpointedStateSize : null,
        status: v.status,
        details: d,
        bp,
      });
    }),
  );
  return stats;
}

async function jobPage(jid, tab, vertexId) {
  const job = await get(paths.job(jid));
  document.title = `Weir · ${job.name}`;
  const controls = jobControls(job);
  const body = h("div", { class: "tab-body" });
  const notice = notices.get(jid);
  const content = [
    renderJobHeader(job, controls),
    notice ? h("div", { class: `notice ${notice.kind}`, id: "notice" }, notice.text) : null,
    renderTabs(jid, tab),
    body,
  ];
  if (tab === "graph") {
    if (!plans.has(jid)) plans.set(jid, await get(paths.plan(jid)));
    const { plan, "sql-explain": explain } = plans.get(jid);
    const stats = await vertexStats(jid, job);
    const vertical = window.innerWidth < 760;
    const graph = drawGraph(plan.nodes.length ? plan : job.plan, stats, {
      vertical,
      onOpen: (v) => (location.hash = `#/jobs/${jid}/vertices/${v}`),
    });
    const legend = h(
      "div",
      { class: "legend small muted" },
      h("span", { class: "swatch bar-busy" }), "busy ",
      h("span", { class: "swatch bar-bp" }), "backpressured ",
      h("span", { class: "swatch bar-idle" }), "idle · box colour: cool idle, hot busy · red outline: backpressured",
    );
    body.append(
      h(
        "div",
        { class: "graph-layout" },
        h("div", { class: "panel graph-panel" }, h("div", { class: "graph-scroll" }, graph), legend),
        explain
          ? h("details", { class: "panel explain", open: true }, h("summary", {}, "SQL streaming plan (EXPLAIN)"), h("pre", { id: "sql-explain" }, explain))
          : null,
      ),
    );
  } else if (tab === "subtasks") {
    const v = job.vertices.find((x) => x.id === vertexId) || job.vertices[0];
    if (v) {
      const [d, bp] = await Promise.all([get(paths.vertex(jid, v.id)), get(paths.backpressure(jid, v.id))]);
      body.append(renderSubtasks(job, d, bp, (id) => (location.hash = `#/jobs/${jid}/vertices/${id}`)));
    }
  } else if (tab === "checkpoints") {
    const [stats, config] = await Promise.all([get(paths.checkpoints(jid)), get(paths.checkpointConfig(jid)).catch(() => null)]);
    // Only the checkpoints still in the history have details.
    const opened = stats.history.some((x) => x.id === openCheckpoint.get(jid)) ? openCheckpoint.get(jid) : undefined;
    const details = opened === undefined ? null : await get(paths.checkpointDetails(jid, opened));
    const vertex = details && details.tasks && details.tasks[openCheckpointVertex.get(jid)] ? openCheckpointVertex.get(jid) : undefined;
    const breakdown = vertex === undefined ? null : await get(paths.checkpointSubtasks(jid, opened, vertex));
    body.append(
      renderCheckpoints(stats, config, {
        details,
        vertices: job.vertices,
        vertex,
        breakdown,
        open: (id) => {
          openCheckpoint.set(jid, id);
          show();
        },
        openVertex: (v) => {
          openCheckpointVertex.set(jid, v);
          show();
        },
      }),
    );
  } else if (tab === "exceptions") {
    body.append(renderExceptions(await get(paths.exceptions(jid))));
  } else if (tab === "configuration") {
    const [config, entries] = await Promise.all([get(paths.checkpointConfig(jid)).catch(() => null), get(paths.jobmanagerConfig).catch(() => [])]);
    body.append(renderJobConfig(job, config, entries));
  }
  return h("div", { class: "page" }, content);
}

/** Asks for confirmation in a dialog: resolves to `{ok, target}`. */
function confirmAction(title, text, { target = false, action = "Confirm" } = {}) {
  const dialog = document.getElementById("confirm-dialog");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-target-label").hidden = !target;
  document.getElementById("confirm-target").value = "";
  document.getElementById("confirm-ok").textContent = action;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      () => resolve({ ok: dialog.returnValue === "ok", target: document.getElementById("confirm-target").value.trim() }),
      { once: true },
    );
    dialog.showModal();
  });
}

/** Shows an action's outcome above the tabs now (the server may be gone by the next refresh). */
function setNotice(jid, kind, text) {
  notices.set(jid, { kind, text });
  let el = document.getElementById("notice");
  if (!el) {
    const tabs = main.querySelector(".tabs");
    if (!tabs) return;
    el = h("div", { id: "notice" });
    tabs.before(el);
  }
  el.className = `notice ${kind}`;
  el.textContent = text;
}

function jobControls(job) {
  const jid = job.jid;
  const savepoint = async (stop) => {
    const what = stop ? "Stop with savepoint" : "Savepoint";
    const { ok, target } = await confirmAction(
      what,
      stop
        ? `Take a savepoint of ${job.name} and stop it? The job ends once the savepoint is written.`
        : `Take a savepoint of ${job.name}? The job keeps running.`,
      { target: true, action: what },
    );
    if (!ok) return;
    try {
      setNotice(jid, "info", `${what}: in progress…`);
      const body = stop
        ? target ? { targetDirectory: target } : {}
        : target ? { "target-directory": target } : {};
      const r = await post(stop ? paths.stop(jid) : paths.savepoints(jid), body);
      const location = await awaitSavepoint(jid, r["request-id"]);
      setNotice(jid, "ok", `${what} completed: ${location}`);
    } catch (e) {
      setNotice(jid, "error", `${what} failed: ${e.message}`);
    }
    show();
  };
  return {
    savepoint: () => savepoint(false),
    stop: () => savepoint(true),
    cancel: async () => {
      const { ok } = await confirmAction("Cancel job", `Cancel ${job.name}? Its state is not saved (take a savepoint first to keep it).`, {
        action: "Cancel job",
      });
      if (!ok) return;
      try {
        await patch(paths.cancel(jid));
        setNotice(jid, "info", "Cancelling…");
      } catch (e) {
        setNotice(jid, "error", `Cancel failed: ${e.message}`);
      }
      show();
    },
  };
}

window.addEventListener("hashchange", show);
// The graph's orientation follows the width.
let wide = window.innerWidth >= 760;
window.addEventListener("resize", () => {
  if (wide !== window.innerWidth >= 760) {
    wide = !wide;
    show();
  }
});

get(paths.config)
  .then((c) => (dashboard = c))
  .catch(() => {})
  .finally(show);

// For the browser tests and curious users: what the page is showing.
window.weir = { fmt };
