// The pages: overview, job (graph, subtasks, checkpoints, exceptions, configuration),
// TaskManagers and the configuration. Each `render*` builds its DOM from REST answers with
// `h` (no HTML strings: names and messages from the server are shown as text).

/** An element: `h("td", {class: "num"}, "42")`. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

const MIN_WATERMARK = -9.2e18;

export const fmt = {
  count(n) {
    if (n === undefined || n === null) return "–";
    return Number(n).toLocaleString("en-US");
  },
  rate(n) {
    if (n === undefined || n === null || Number.isNaN(n)) return "–";
    if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M/s`;
    if (n >= 1e4) return `${(n / 1e3).toFixed(0)}k/s`;
    if (n >= 1e3) return `${(n / 1e3).toFixed(1)}k/s`;
    return `${n.toFixed(n < 10 && n > 0 ? 1 : 0)}/s`;
  },
  pct(x) {
    if (x === undefined || x === null) return "–";
    return `${Math.round(x * 100)}%`;
  },
  bytes(n) {
    if (n === undefined || n === null || n < 0) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    let v = n;
    while (v >= 1024 && i < units.length - 1) {
      v /= 1024;
      i += 1;
    }
    return `${v.toFixed(i === 0 || v >= 100 ? 0 : 1)} ${units[i]}`;
  },
  ms(n) {
    if (n === undefined || n === null || n < 0) return "–";
    if (n < 1000) return `${n} ms`;
    const s = n / 1000;
    if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m}m ${Math.round(s % 60)}s`;
    const hr = Math.floor(m / 60);
    if (hr < 48) return `${hr}h ${m % 60}m`;
    return `${Math.floor(hr / 24)}d ${hr % 24}h`;
  },
  time(ts) {
    if (!ts || ts < 0) return "–";
    const d = new Date(ts);
    const today = new Date();
    const hms = d.toLocaleTimeString("en-GB", { hour12: false });
    return d.toDateString() === today.toDateString() ? hms : `${d.toISOString().slice(0, 10)} ${hms}`;
  },
  watermark(w) {
    if (w === undefined || w === null || Number(w) <= MIN_WATERMARK) return "none";
    if (Number(w) >= 9.2e18) return "end";
    return new Date(Number(w)).toISOString().replace("T", " ").slice(0, 19);
  },
};

export function stateBadge(state) {
  return h("span", { class: `state state-${state}` }, state);
}

function table(headers, rows, attrs = {}) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      attrs,
      h("thead", {}, h("tr", {}, headers.map((x) => h("th", { class: x.num ? "num" : "" }, x.label || x)))),
      h("tbody", {}, rows),
    ),
  );
}

const num = (label) => ({ label, num: true });

function card(label, value, attrs = {}) {
  return h("div", { class: "card", ...attrs }, h("div", { class: "card-value" }, value), h("div", { class: "card-label" }, label));
}

function section(title, ...children) {
  return h("section", { class: "panel" }, h("h2", {}, title), ...children);
}

function kv(pairs) {
  return h(
    "dl",
    { class: "kv" },
    pairs.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]),
  );
}

export function renderOverview(overview, jobs, tms) {
  const rows = jobs.jobs
    .slice()
    .sort((a, b) => b["start-time"] - a["start-time"])
    .map((j) =>
      h(
        "tr",
        { class: "clickable", "data-job": j.jid, onclick: () => (location.hash = `#/jobs/${j.jid}`) },
        h("td", {}, h("a", { href: `#/jobs/${j.jid}` }, j.name || j.jid), h("div", { class: "muted mono small" }, j.jid)),
        h("td", {}, stateBadge(j.state)),
        h("td", {}, fmt.time(j["start-time"])),
        h("td", { class: "num" }, fmt.ms(j.duration)),
        h("td", { class: "num" }, `${j.tasks.running}/${j.tasks.total}`),
      ),
    );
  return h(
    "div",
    { class: "page" },
    h("h1", {}, "Overview"),
    h(
      "div",
      { class: "cards" },
      card("TaskManagers", fmt.count(overview.taskmanagers), { "data-testid": "tm-count" }),
      card("Slots total", fmt.count(overview["slots-total"])),
      card("Slots available", fmt.count(overview["slots-available"])),
      card("Jobs running", fmt.count(overview["jobs-running"]), { "data-testid": "jobs-running" }),
      card("Finished", fmt.count(overview["jobs-finished"])),
      card("Cancelled", fmt.count(overview["jobs-cancelled"])),
      card("Failed", fmt.count(overview["jobs-failed"])),
    ),
    section(
      "Jobs",
      rows.length
        ? table(["Name", "State", "Started", num("Duration"), num("Tasks running")], rows, { id: "jobs-table" })
        : h("p", { class: "muted" }, "No jobs."),
    ),
    section("TaskManagers", renderTaskManagerTable(tms)),
  );
}

function memoryBar(used, budget) {
  if (!budget || !used) return h("span", {}, fmt.bytes(used));
  const bar = h("span", { class: "membar" }, h("span", { class: used > budget ? "over" : "" }));
  bar.firstChild.style.width = `${Math.min(100, (100 * used) / budget)}%`;
  return h("span", { class: "memcell" }, bar, h("span", {}, `${fmt.bytes(used)} of ${fmt.bytes(budget)}`));
}

export function renderTaskManagerTable(tms) {
  const rows = tms.taskmanagers.map((t) => {
    const mem = t.memoryConfiguration || {};
    return h(
      "tr",
      { class: "clickable", "data-tm": t.id, onclick: () => (location.hash = `#/taskmanagers/${encodeURIComponent(t.id)}`) },
      h("td", {}, h("a", { href: `#/taskmanagers/${encodeURIComponent(t.id)}` }, t.id), h("div", { class: "muted small" }, t.path ? `${t.path}:${t.dataPort ?? ""}` : "this process")),
      h("td", { class: "num" }, `${t.freeSlots} / ${t.slotsNumber}`),
      h("td", { class: "num" }, fmt.bytes(mem.totalProcessMemory)),
      h("td", {}, memoryBar(t.weir && t.weir.residentMemory, mem.totalProcessMemory)),
      h("td", { class: "num" }, fmt.ms(t.timeSinceLastHeartbeat)),
    );
  });
  if (!rows.length) return h("p", { class: "muted" }, "No TaskManager registered.");
  return table(["TaskManager", num("Free slots"), num("Memory budget"), "Resident memory", num("Heartbeat")], rows, { id: "tm-table" });
}

export function renderTaskManagers(tms) {
  return h("div", { class: "page" }, h("h1", {}, "TaskManagers"), section("Registered", renderTaskManagerTable(tms)));
}

export function renderTaskManager(t) {
  const mem = t.memoryConfiguration || {};
  const w = t.weir || {};
  const parts = [
    ["Network (buffers)", mem.networkMemory],
    ["Managed (RocksDB)", mem.managedMemory],
    ["Task", mem.taskHeap],
    ["Framework", mem.frameworkOffHeap],
  ];
  const total = mem.totalProcessMemory || 0;
  const stack = h("div", { class: "stack" });
  parts.forEach(([, v], i) => {
    if (!total || !v) return;
    const seg = h("span", { class: `seg seg-${i}` });
    seg.style.width = `${(100 * v) / total}%`;
    stack.append(seg);
  });
  return h(
    "div",
    { class: "page" },
    h("p", { class: "crumbs" }, h("a", { href: "#/taskmanagers" }, "TaskManagers"), " / "),
    h("h1", {}, t.id),
    h(
      "div",
      { class: "cards" },
      card("Slots", `${t.slotsNumber}`),
      card("Free slots", `${t.freeSlots}`),
      card("Memory budget", fmt.bytes(mem.totalProcessMemory)),
      card("Resident memory", fmt.bytes(w.residentMemory), { "data-testid": "tm-rss" }),
    ),
    section(
      "Memory budget (taskmanager.memory.*)",
      total ? stack : h("p", { class: "muted" }, "No memory budget configured (taskmanager.memory.process.size)."),
      kv([
        ...parts.map(([k, v], i) => [h("span", {}, h("span", { class: `swatch seg-${i}` }), k), fmt.bytes(v)]),
        ["Network buffers", w.networkBuffers === undefined || w.networkBuffers === null ? "–" : `${fmt.count(w.networkBuffers)} × ${fmt.bytes(w.segmentSize)}`],
        ["Resident now", memoryBar(w.residentMemory, total)],
      ]),
    ),
    section(
      "Connection",
      kv([
        ["Data address", t.path ? `${t.path}:${t.dataPort ?? ""}` : "this process (weir run)"],
        ["Last heartbeat", `${fmt.ms(t.timeSinceLastHeartbeat)} ago`],
      ]),
    ),
  );
}

export function renderConfig(entries, dashboard) {
  const rows = entries.map((e) => h("tr", {}, h("td", { class: "mono" }, e.key), h("td", { class: "mono wrap" }, e.value)));
  return h(
    "div",
    { class: "page" },
    h("h1", {}, "Configuration"),
    section(
      "Weir",
      kv([
        ["Version", dashboard["flink-version"]],
        ["Time zone", dashboard["timezone-name"]],
      ]),
    ),
    section(
      "Options in effect",
      rows.length ? table(["Key", "Value"], rows, { id: "config-table" }) : h("p", { class: "muted" }, "Not reported by this server."),
    ),
  );
}

/** The job header: name, state, times and the control buttons. */
export function renderJobHeader(job, controls) {
  const live = !["FINISHED", "CANCELED", "CANCELLING", "FAILED"].includes(job.state);
  return h(
    "div",
    { class: "job-head" },
    h(
      "div",
      { class: "job-title" },
      h("h1", {}, job.name || job.jid, " ", stateBadge(job.state)),
      h(
        "div",
        { class: "muted small" },
        h("span", { class: "mono" }, job.jid),
        ` · started ${fmt.time(job["start-time"])} · running ${fmt.ms(job.duration)}`,
      ),
    ),
    h(
      "div",
      { class: "actions" },
      h("button", { id: "btn-savepoint", disabled: !live, onclick: controls.savepoint }, "Savepoint"),
      h("button", { id: "btn-stop", disabled: !live, onclick: controls.stop }, "Stop with savepoint"),
      h("button", { id: "btn-cancel", class: "danger", disabled: !live, onclick: controls.cancel }, "Cancel job"),
    ),
  );
}

export function renderTabs(jid, active) {
  const tabs = [
    ["graph", "Graph"],
    ["subtasks", "Subtasks"],
    ["checkpoints", "Checkpoints"],
    ["exceptions", "Exceptions"],
    ["configuration", "Configuration"],
  ];
  return h(
    "nav",
    { class: "tabs" },
    tabs.map(([id, label]) =>
      h("a", { href: `#/jobs/${jid}/${id}`, class: id === active ? "active" : "", "data-tab": id }, label),
    ),
  );
}

/** The table of one vertex's subtasks, with a picker for the vertex. */
export function renderSubtasks(job, vertex, backpressure, select) {
  const picker = h(
    "select",
    { id: "vertex-picker", onchange: (e) => select(e.target.value), "aria-label": "operator" },
    job.vertices.map((v) => h("option", { value: v.id, selected: v.id === vertex.id }, v.name)),
  );
  const bp = new Map((backpressure.subtasks || []).map((s) => [s.subtask, s]));
  const rows = vertex.subtasks.map((s) => {
    const b = bp.get(s.subtask) || {};
    return h(
      "tr",
      { "data-subtask": s.subtask },
      h("td", { class: "num" }, `${s.subtask}`),
      h("td", {}, stateBadge(s.status)),
      h("td", { class: "num" }, fmt.count(s.metrics["read-records"])),
      h("td", { class: "num" }, fmt.count(s.metrics["write-records"])),
      h("td", { class: "num" }, fmt.rate(s.weir.recordsInPerSecond)),
      h("td", { class: "num" }, fmt.rate(s.weir.recordsOutPerSecond)),
      h("td", { class: `num level-${b["backpressure-level"] || "ok"}` }, fmt.pct(b.ratio)),
      h("td", { class: "num" }, fmt.pct(b.busyRatio)),
      h("td", { class: "num" }, fmt.pct(b.idleRatio)),
      h("td", {}, fmt.watermark(s.weir.currentInputWatermark)),
      h("td", { class: "num" }, fmt.count(s.weir.stateEntries)),
      h("td", {}, s["taskmanager-id"] || "–"),
    );
  });
  return h(
    "div",
    {},
    h(
      "div",
      { class: "picker" },
      h("label", {}, "Operator chain ", picker),
      h(
        "span",
        { class: "muted" },
        vertex.weir && vertex.weir.checkpointedStateSize !== null && vertex.weir.checkpointedStateSize !== undefined
          ? `state in the latest checkpoint: ${fmt.bytes(vertex.weir.checkpointedStateSize)}`
          : "",
      ),
    ),
    table(
      [num("#"), "Status", num("Records in"), num("Records out"), num("In/s"), num("Out/s"), num("Backpressured"), num("Busy"), num("Idle"), "Watermark", num("State entries"), "TaskManager"],
      rows,
      { id: "subtask-table" },
    ),
  );
}

function checkpointRow(c, open) {
  const type = c.is_savepoint ? "savepoint" : "checkpoint";
  return h(
    "tr",
    { class: `clickable ckpt-${c.status}`, "data-checkpoint": c.id, onclick: () => open(c.id) },
    h("td", { class: "num" }, `${c.id}`),
    h("td", {}, h("span", { class: `state state-${c.status}` }, c.status.replace("_", " "))),
    h("td", {}, type),
    h("td", {}, fmt.time(c.trigger_timestamp)),
    h("td", { class: "num" }, fmt.ms(c.end_to_end_duration)),
    h("td", { class: "num" }, fmt.bytes(c.state_size)),
    h("td", { class: "num" }, fmt.bytes(c.checkpointed_size)),
    h("td", { class: "num" }, fmt.ms(c.weir ? c.weir.alignmentDuration : null)),
    h("td", { class: "mono wrap small" }, c.external_path || c.failure_message || "–"),
  );
}

/** One checkpoint's part per vertex (operator chain): a row opens its subtasks. */
function checkpointTasks(details, vertices, opened, openVertex) {
  const rows = vertices
    .filter((v) => details.tasks && details.tasks[v.id])
    .map((v) => {
      const t = details.tasks[v.id];
      return h(
        "tr",
        { class: `clickable${v.id === opened ? " selected" : ""}`, "data-vertex": v.id, onclick: () => openVertex(v.id) },
        h("td", {}, v.name),
        h("td", {}, h("span", { class: `state state-${t.status}` }, t.status.replace("_", " "))),
        h("td", { class: "num" }, `${t.num_acknowledged_subtasks}/${t.num_subtasks}`),
        h("td", { class: "num" }, fmt.ms(t.end_to_end_duration)),
        h("td", { class: "num" }, fmt.bytes(t.state_size)),
        h("td", { class: "num" }, fmt.bytes(t.checkpointed_size)),
        h("td", { class: "num" }, fmt.ms(t.weir.alignmentDuration)),
        h("td", { class: "num" }, fmt.ms(t.weir.startDelay)),
        h("td", { class: "num" }, fmt.bytes(t.persisted_data)),
      );
    });
  return table(
    ["Operator chain", "Status", num("Acknowledged"), num("Duration"), num("Size"), num("Written"), num("Max alignment"), num("Max start delay"), num("In-flight")],
    rows,
    { id: "checkpoint-tasks" },
  );
}

/** One vertex's part of a checkpoint per subtask. */
function checkpointSubtasks(b, name) {
  const rows = b.subtasks.map((s) =>
    s.status === "completed"
      ? h(
          "tr",
          {},
          h("td", { class: "num" }, `${s.index}`),
          h("td", {}, "acknowledged"),
          h("td", {}, fmt.time(s.ack_timestamp)),
          h("td", { class: "num" }, fmt.ms(s.end_to_end_duration)),
          h("td", { class: "num" }, fmt.bytes(s.state_size)),
          h("td", { class: "num" }, fmt.bytes(s.checkpointed_size)),
          h("td", { class: "num" }, fmt.ms(s.checkpoint.sync)),
          h("td", { class: "num" }, fmt.ms(s.checkpoint.async)),
          h("td", { class: "num" }, fmt.ms(s.alignment.duration)),
          h("td", { class: "num" }, fmt.ms(s.start_delay)),
          h("td", {}, s.unaligned_checkpoint ? `unaligned, ${fmt.bytes(s.alignment.persisted)} in flight` : "aligned"),
        )
      : h("tr", {}, h("td", { class: "num" }, `${s.index}`), h("td", { colspan: 10, class: "muted" }, "not acknowledged")),
  );
  return h(
    "div",
    {},
    h("h3", {}, `${name}: subtasks`),
    table(
      [num("#"), "Status", "Acknowledged", num("Duration"), num("Size"), num("Written"), num("Sync"), num("Async"), num("Alignment"), num("Start delay"), "Barrier"],
      rows,
      { id: "checkpoint-subtasks" },
    ),
  );
}

/**
 * The checkpoints tab. `opened`: the checkpoint opened in the history (`details`), the job's
 * `vertices`, the `vertex` opened in its breakdown with its per-subtask `breakdown`, and the
 * `open(id)` / `openVertex(id)` callbacks.
 */
export function renderCheckpoints(stats, config, opened) {
  const { details, vertices, vertex, breakdown, open, openVertex } = opened;
  const c = stats.counts;
  const latest = stats.latest || {};
  const restored = latest.restored;
  const mode = config
    ? `${config.mode === "exactly_once" ? "exactly once" : "at least once"}, ${config.unaligned_checkpoints ? "unaligned" : "aligned"} barriers, every ${fmt.ms(config.interval)}`
    : "checkpointing is off";
  const summary = stats.summary;
  const s = (m, f) => `${f(m.min)} / ${f(m.avg)} / ${f(m.max)}`;
  const kids = [
    h(
      "div",
      { class: "cards" },
      card("Triggered", fmt.count(c.total)),
      card("In progress", fmt.count(c.in_progress)),
      card("Completed", fmt.count(c.completed), { "data-testid": "ckpt-completed" }),
      card("Failed", fmt.count(c.failed)),
      card("Restored", fmt.count(c.restored)),
    ),
    section(
      "Latest",
      kv([
        ["Mode", mode],
        ["Completed checkpoint", latest.completed ? `#${latest.completed.id} at ${fmt.time(latest.completed.latest_ack_timestamp)} · ${fmt.bytes(latest.completed.state_size)} · ${latest.completed.external_path || ""}` : "none yet"],
        ["Savepoint", h("span", { id: "latest-savepoint" }, latest.savepoint ? `#${latest.savepoint.id} at ${fmt.time(latest.savepoint.latest_ack_timestamp)} · ${latest.savepoint.external_path || ""}` : "none")],
        ["Failed", latest.failed ? `#${latest.failed.id}: ${latest.failed.failure_message || ""}` : "none"],
        ["Restored from", restored ? `${restored.is_savepoint ? "savepoint" : `checkpoint #${restored.id}`} ${restored.external_path} at ${fmt.time(restored.restore_timestamp)}` : "not restored"],
        ["Size (min / avg / max)", s(summary.state_size, fmt.bytes)],
        ["Incremental size (min / avg / max)", s(summary.checkpointed_size, fmt.bytes)],
        ["Duration (min / avg / max)", s(summary.end_to_end_duration, fmt.ms)],
      ]),
    ),
    section(
      "History",
      stats.history.length
        ? table([num("ID"), "Status", "Type", "Triggered", num("Duration"), num("Size"), num("Incremental"), num("Alignment"), "Path"], stats.history.map((x) => checkpointRow(x, open)), { id: "checkpoint-history" })
        : h("p", { class: "muted", id: "checkpoint-history-empty" }, "No checkpoint yet."),
    ),
  ];
  if (details) {
    kids.push(
      section(
        `Checkpoint #${details.id}`,
        kv([
          ["Status", details.status],
          ["Type", details.checkpoint_type],
          ["Triggered", fmt.time(details.trigger_timestamp)],
          ["Acknowledged", fmt.time(details.latest_ack_timestamp)],
          ["Duration", fmt.ms(details.end_to_end_duration)],
          ["Size", fmt.bytes(details.state_size)],
          ["Written by this checkpoint (incremental)", fmt.bytes(details.checkpointed_size)],
          ["Acknowledged subtasks", `${details.num_acknowledged_subtasks} of ${details.num_subtasks}`],
          ["Longest alignment", fmt.ms(details.weir ? details.weir.alignmentDuration : null)],
          ["Path", details.external_path || "–"],
          ["Failure", details.failure_message || "–"],
        ]),
        checkpointTasks(details, vertices, vertex, openVertex),
        breakdown ? checkpointSubtasks(breakdown, (vertices.find((v) => v.id === vertex) || {}).name || vertex) : h("p", { class: "muted small" }, "Open an operator chain for its subtasks."),
      ),
    );
  }
  return h("div", {}, kids);
}

export function renderExceptions(ex) {
  const entries = (ex.exceptionHistory && ex.exceptionHistory.entries) || [];
  if (!entries.length) return section("Exceptions", h("p", { class: "muted", id: "no-exceptions" }, "No exception: the job has not failed."));
  return section(
    "Exceptions",
    h(
      "ol",
      { class: "exceptions", id: "exception-list" },
      entries.map((e) =>
        h(
          "li",
          {},
          h("div", { class: "exc-head" }, h("strong", {}, fmt.time(e.timestamp)), " · ", h("span", { class: "mono" }, e.taskName || "job"), " · ", e.exceptionName),
          h("pre", {}, e.stacktrace),
        ),
      ),
    ),
  );
}

export function renderJobConfig(job, ckptConfig, entries) {
  return h(
    "div",
    {},
    section(
      "Job",
      kv([
        ["Name", job.name],
        ["ID", job.jid],
        ["Type", job["job-type"]],
        ["Vertices", `${job.vertices.length}`],
      ]),
    ),
    section(
      "Checkpointing",
      ckptConfig
        ? kv([
            ["Mode", ckptConfig.mode],
            ["Interval", fmt.ms(ckptConfig.interval)],
            ["Timeout", fmt.ms(ckptConfig.timeout)],
            ["Min pause", fmt.ms(ckptConfig.min_pause)],
            ["Unaligned", `${ckptConfig.unaligned_checkpoints}`],
            ["Storage", ckptConfig.checkpoint_storage || "–"],
            ["Savepoints", ckptConfig.savepoints_dir || "–"],
            ["Retained", `${ckptConfig.num_retained}`],
            ["Tolerable failures", `${ckptConfig.tolerable_failed_checkpoints}`],
          ])
        : h("p", { class: "muted" }, "Checkpointing is off (execution.checkpointing.interval)."),
    ),
    section(
      "Options",
      entries.length ? table(["Key", "Value"], entries.map((e) => h("tr", {}, h("td", { class: "mono" }, e.key), h("td", { class: "mono wrap" }, e.value)))) : h("p", { class: "muted" }, "Not reported."),
    ),
  );
}
