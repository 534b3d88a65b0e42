// The REST API as the page uses it: relative paths (so the page works behind a proxy or an
// Ingress path), the bearer token from this tab's sessionStorage, and one place that asks for
// the token when the server answers 401.

const TOKEN_KEY = "weir.rest.token";

/** An answer other than 2xx, with the server's `errors` message. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

let askingForToken = null;

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

/** Shows the token dialog once, however many requests were refused; resolves when signed in. */
function askForToken(wrong) {
  if (askingForToken) return askingForToken;
  const dialog = document.getElementById("token-dialog");
  const form = document.getElementById("token-form");
  const input = document.getElementById("token-input");
  const error = document.getElementById("token-error");
  error.hidden = !wrong;
  error.textContent = wrong ? "The server refused that token." : "";
  input.value = "";
  askingForToken = new Promise((resolve) => {
    form.addEventListener(
      "submit",
      () => {
        sessionStorage.setItem(TOKEN_KEY, input.value.trim());
        askingForToken = null;
        resolve();
      },
      { once: true },
    );
  });
  dialog.addEventListener("cancel", (e) => e.preventDefault(), { once: true });
  if (!dialog.open) dialog.showModal();
  return askingForToken;
}

/** `method path` with an optional JSON body; resolves to the parsed JSON answer. */
export async function request(path, { method = "GET", body } = {}) {
  for (;;) {
    const headers = { Accept: "application/json" };
    const t = token();
    if (t) headers.Authorization = `Bearer ${t}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const r = await fetch(path.replace(/^\//, ""), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (r.status === 401) {
      await askForToken(Boolean(t));
      continue;
    }
    const text = await r.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = null;
    }
    if (!r.ok) {
      const msg = json && Array.isArray(json.errors) ? json.errors.join("; ") : `${r.status} ${r.statusText}`;
      throw new ApiError(r.status, msg);
    }
    return json;
  }
}

export const get = (path) => request(path);
export const post = (path, body) => request(path, { method: "POST", body });
export const patch = (path) => request(path, { method: "PATCH" });

// The paths, spelled once (as weir_contract::rest::Route spells them).
export const paths = {
  config: "config",
  overview: "overview",
  jobsOverview: "jobs/overview",
  taskmanagers: "taskmanagers",
  taskmanager: (id) => `taskmanagers/${encodeURIComponent(id)}`,
  jobmanagerConfig: "jobmanager/config",
  job: (j) => `jobs/${j}`,
  cancel: (j) => `jobs/${j}?mode=cancel`,
  plan: (j) => `jobs/${j}/plan`,
  vertex: (j, v) => `jobs/${j}/vertices/${v}`,
  backpressure: (j, v) => `jobs/${j}/vertices/${v}/backpressure`,
  watermarks: (j, v) => `jobs/${j}/vertices/${v}/watermarks`,
  checkpoints: (j) => `jobs/${j}/checkpoints`,
  checkpointConfig: (j) => `jobs/${j}/checkpoints/config`,
  checkpointDetails: (j, c) => `jobs/${j}/checkpoints/details/${c}`,
  checkpointSubtasks: (j, c, v) => `jobs/${j}/checkpoints/details/${c}/subtasks/${v}`,
  exceptions: (j) => `jobs/${j}/exceptions`,
  savepoints: (j) => `jobs/${j}/savepoints`,
  savepointStatus: (j, t) => `jobs/${j}/savepoints/${t}`,
  stop: (j) => `jobs/${j}/stop`,
};

/** Polls a savepoint trigger until it completes: the location, or throws the failure cause. */
export async function awaitSavepoint(job, trigger) {
  for (;;) {
    const s = await get(paths.savepointStatus(job, trigger));
    if (s.status && s.status.id === "COMPLETED") {
      const op = s.operation || {};
      if (op.location) return op.location;
      const cause = op["failure-cause"];
      throw new Error(cause ? cause["stack-trace"] || cause.class : "the savepoint failed");
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}
