// The job graph as inline SVG: one box per vertex (operator chain) placed in layers by its
// longest path from a source, edges labelled with their partitioning. Left to right on wide
// screens, top to bottom on narrow ones. Boxes are coloured by how busy the vertex is and
// outlined by its backpressure level, as in Flink's web UI.

import { fmt } from "./pages.js";

const NS = "http://www.w3.org/2000/svg";
const W = 300;
const H = 134;
const GAP_LAYER = 96;
const GAP = 34;

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) el.setAttribute(k, v);
  for (const c of children) if (c !== null && c !== undefined) el.append(c);
  return el;
}

function text(x, y, content, cls) {
  return s("text", { x, y, class: cls }, content);
}

/** Lines of at most `n` characters, breaking an operator chain at its arrows. */
function wrap(name, n, maxLines) {
  const parts = name.split(" -> ");
  const lines = [];
  let cur = "";
  for (const p of parts) {
    const piece = cur ? `${cur} → ${p}` : p;
    if (piece.length <= n) {
      cur = piece;
    } else {
      if (cur) lines.push(cur);
      cur = p.length > n ? `${p.slice(0, n - 1)}…` : p;
    }
  }
  if (cur) lines.push(cur);
  if (lines.length > maxLines) {
    const kept = lines.slice(0, maxLines);
    kept[maxLines - 1] = `${kept[maxLines - 1].slice(0, n - 2)} …`;
    return kept;
  }
  return lines;
}

/** Keyed state: entries now, and bytes in the latest checkpoint when there is one. */
function stateText(st) {
  const size = st.stateSize === null || st.stateSize === undefined ? "" : `, ${fmt.bytes(st.stateSize)}`;
  return `state ${fmt.count(st.stateEntries)}${size}`;
}

function layers(nodes) {
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const layer = new Map();
  const depth = (n, seen = new Set()) => {
    if (layer.has(n.id)) return layer.get(n.id);
    if (seen.has(n.id)) return 0;
    seen.add(n.id);
    const ins = (n.inputs || []).map((i) => byId.get(i.id)).filter(Boolean);
    const d = ins.length ? 1 + Math.max(...ins.map((i) => depth(i, seen))) : 0;
    layer.set(n.id, d);
    return d;
  };
  nodes.forEach((n) => depth(n));
  const out = [];
  for (const n of nodes) {
    const d = layer.get(n.id);
    (out[d] ||= []).push(n);
  }
  return out;
}

/**
 * Draws `plan.nodes` with `stats` (vertex id → {inRate, outRate, backpressure, idle, busy,
 * level, watermark, stateEntries, status}); `onOpen(id)` is called when a box is clicked.
 */
export function drawGraph(plan, stats, { vertical, onOpen }) {
  const ls = layers(plan.nodes);
  const pos = new Map();
  const widest = Math.max(...ls.map((l) => l.length), 1);
  ls.forEach((l, i) => {
    l.forEach((n, j) => {
      // Centre each layer on the widest one.
      const offset = ((widest - l.length) * (vertical ? W + GAP : H + GAP)) / 2;
      pos.set(
        n.id,
        vertical
          ? { x: offset + j * (W + GAP), y: i * (H + GAP_LAYER) }
          : { x: i * (W + GAP_LAYER), y: offset + j * (H + GAP) },
      );
    });
  });
  const width = vertical ? widest * (W + GAP) - GAP : ls.length * (W + GAP_LAYER) - GAP_LAYER;
  const height = vertical ? ls.length * (H + GAP_LAYER) - GAP_LAYER : widest * (H + GAP) - GAP;
  const pad = 12;
  const svg = s("svg", {
    viewBox: `${-pad} ${-pad} ${width + 2 * pad} ${height + 2 * pad}`,
    class: "graph",
    role: "img",
    "aria-label": "job graph",
    width: width + 2 * pad,
  });
  svg.append(
    s(
      "defs",
      {},
      s(
        "marker",
        { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
        s("path", { d: "M0,0 L10,5 L0,10 z", class: "arrow" }),
      ),
    ),
  );
  const edges = s("g", { class: "edges" });
  const boxes = s("g", { class: "nodes" });
  svg.append(edges, boxes);
  for (const n of plan.nodes) {
    const to = pos.get(n.id);
    for (const input of n.inputs || []) {
      const from = pos.get(input.id);
      if (!from) continue;
      const [x1, y1, x2, y2] = vertical
        ? [from.x + W / 2, from.y + H, to.x + W / 2, to.y]
        : [from.x + W, from.y + H / 2, to.x, to.y + H / 2];
      const d = vertical
        ? `M${x1},${y1} C${x1},${(y1 + y2) / 2} ${x2},${(y1 + y2) / 2} ${x2},${y2 - 2}`
        : `M${x1},${y1} C${(x1 + x2) / 2},${y1} ${(x1 + x2) / 2},${y2} ${x2 - 2},${y2}`;
      const label = input.ship_strategy || "";
      const mx = (x1 + x2) / 2;
      const my = (y1 + y2) / 2;
      const lw = label.length * 7.4 + 12;
      edges.append(
        s(
          "g",
          { class: "edge", "data-from": input.id, "data-to": n.id, "data-partitioning": label },
          s("path", { d, "marker-end": "url(#arrow)" }),
          s("rect", { x: mx - lw / 2, y: my - 10, width: lw, height: 20, rx: 10, class: "edge-label" }),
          text(mx, my + 4, label, "edge-text"),
        ),
      );
    }
  }
  for (const n of plan.nodes) {
    const p = pos.get(n.id);
    const st = stats.get(n.id) || {};
    const level = st.level || "ok";
    const busy = st.busy ?? 0;
    const g = s("g", {
      class: `node level-${level}`,
      transform: `translate(${p.x},${p.y})`,
      "data-vertex": n.id,
      "data-backpressure": level,
      tabindex: 0,
      role: "link",
    });
    g.append(
      s(
        "title",
        {},
        `${n.description}\nbusy ${fmt.pct(busy)}, backpressured ${fmt.pct(st.backpressure)}, idle ${fmt.pct(st.idle)}\n(click for its subtasks)`,
      ),
    );
    // The fill's warmth says how busy the vertex is (0% cool … 100% hot).
    const hue = Math.round(210 - 190 * Math.min(1, busy));
    const rect = s("rect", { width: W, height: H, rx: 10, class: "box" });
    rect.style.setProperty("--busy-hue", hue);
    g.append(rect);
    const lines = wrap(n.description, 31, 2);
    // Names are clipped to the box, whatever the font's width.
    const clip = `clip-${n.id}`;
    g.append(s("clipPath", { id: clip }, s("rect", { x: 8, y: 0, width: W - 16, height: H })));
    const title = s("g", { "clip-path": `url(#${clip})` });
    lines.forEach((l, i) => title.append(text(12, 21 + i * 16, l, "node-title")));
    g.append(title);
    let y = 21 + lines.length * 16 + 2;
    g.append(text(12, y, `Parallelism ${n.parallelism}`, "node-meta"));
    if (st.status) g.append(text(W - 12, y, st.status, `node-meta end status-${st.status}`));
    y += 18;
    // A source reads from no other task: only its output rate means something.
    const source = !(n.inputs || []).length;
    g.append(text(12, y, source ? "Source" : `In ${fmt.rate(st.inRate)}`, "node-rate"));
    // Nothing reads what the last task emits: a sink's output rate is not records sent on.
    const sink = !plan.nodes.some((m) => (m.inputs || []).some((i) => i.id === n.id));
    g.append(text(W / 2 + 4, y, sink ? "Sink" : `Out ${fmt.rate(st.outRate)}`, "node-rate"));
    y += 10;
    // Busy / backpressured / idle as one bar.
    const bw = W - 24;
    const bp = st.backpressure ?? 0;
    const idle = st.idle ?? 0;
    const bar = s("g", { transform: `translate(12,${y})` });
    bar.append(s("rect", { width: bw, height: 8, rx: 4, class: "bar-bg" }));
    let bx = 0;
    for (const [share, cls] of [
      [busy, "bar-busy"],
      [bp, "bar-bp"],
      [idle, "bar-idle"],
    ]) {
      const w = Math.max(0, Math.min(1, share)) * bw;
      if (w > 0.5) bar.append(s("rect", { x: bx, width: w, height: 8, class: cls }));
      bx += w;
    }
    g.append(bar);
    y += 22;
    g.append(
      text(
        12,
        y,
        `busy ${fmt.pct(busy)} · backpressured ${fmt.pct(bp)}`,
        "node-meta shares",
      ),
    );
    y += 16;
    g.append(
      text(
        12,
        y,
        `${source ? "" : `WM ${fmt.watermark(st.watermark)} · `}${stateText(st)}`,
        "node-meta",
      ),
    );
    if (level !== "ok") {
      const label = level === "high" ? "BACKPRESSURED" : "backpressure low";
      const lw = label.length * 8 + 16;
      g.append(s("rect", { x: W - lw - 10, y: -11, width: lw, height: 22, rx: 11, class: "badge-bg" }));
      g.append(text(W - lw / 2 - 10, 4, label, "badge-text"));
    }
    g.addEventListener("click", () => onOpen(n.id));
    g.addEventListener("keydown", (e) => {
      if (e.key === "Enter") onOpen(n.id);
    });
    boxes.append(g);
  }
  return svg;
}
