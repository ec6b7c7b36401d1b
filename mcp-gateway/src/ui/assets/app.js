// The dashboard: one ES module, no build step, no dependencies. It talks to the gateway's /ui/api/ with the
// signed-in identity: a token pasted at sign-in (kept in sessionStorage only) or an Authorization header an auth
// proxy in front adds. Live views read server-sent events through fetch (EventSource cannot send a header), and
// resume with Last-Event-ID after a dropped connection.
//
// Routes: #/ (namespace), #/ns/NS (the tree), #/ns/NS/session/NAME (a session).

const TOKEN_KEY = "agent-orchestrator.token";
const main = document.getElementById("main");
const api = "/ui/api";

// Figures the browser tests read (render times, when a phase was first shown).
// firstFullRenderAt: ms after navigation when the first non-empty tree was on the page; snapshotToRenderMs: from the
// snapshot's arrival to that render.
const stats = (window.dashboard = {
  renders: 0,
  lastRenderMs: 0,
  firstFullRenderAt: 0,
  snapshotAt: 0,
  snapshotToRenderMs: 0,
  phaseShownAt: {},
});

let view = null; // the current view's AbortController: route changes stop its streams

const esc = (s) =>
  String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

function headers(extra = {}) {
  const h = { ...extra };
  const t = token();
  if (t) h.Authorization = `Bearer ${t}`;
  return h;
}

class Unauthorized extends Error {}

async function call(path, { method = "GET", body, signal } = {}) {
  const res = await fetch(api + path, {
    method,
    signal,
    headers: headers(body ? { "Content-Type": "application/json" } : {}),
    body: body ? JSON.stringify(body) : undefined,
  });
  const data = await res.json().catch(() => ({ error: `HTTP ${res.status}` }));
  if (res.status === 401) throw new Unauthorized(data.error);
  if (!res.ok) throw new Error(data.error || `HTTP ${res.status}`);
  return data;
}

// Server-sent events over fetch, reconnecting with Last-Event-ID. onEvent(type, data) gets parsed JSON.
async function events(path, onEvent, signal) {
  let lastId = null;
  let delay = 500;
  while (!signal.aborted) {
    try {
      const h = headers({ Accept: "text/event-stream" });
      if (lastId) h["Last-Event-ID"] = lastId;
      const res = await fetch(api + path, { headers: h, signal });
      if (res.status === 401) {
        const data = await res.json().catch(() => ({}));
        throw new Unauthorized(data.error);
      }
      if (!res.ok) {
        const data = await res.json().catch(() => ({}));
        throw new Error(data.error || `HTTP ${res.status}`);
      }
      delay = 500;
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let end;
        while ((end = buf.indexOf("\n\n")) >= 0) {
          const frame = buf.slice(0, end);
          buf = buf.slice(end + 2);
          let type = "message";
          let id = null;
          const data = [];
          for (const line of frame.split("\n")) {
            if (line.startsWith(":")) continue; // heartbeat
            const i = line.indexOf(":");
            const field = i < 0 ? line : line.slice(0, i);
            const val = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
            if (field === "event") type = val;
            else if (field === "id") id = val;
            else if (field === "data") data.push(val);
          }
          if (id) lastId = id;
          if (data.length) onEvent(type, JSON.parse(data.join("\n")));
        }
      }
    } catch (e) {
      if (signal.aborted) return;
      if (e instanceof Unauthorized) return signIn(e.message);
      showStreamError(e.message);
    }
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 10000);
  }
}

function showStreamError(message) {
  const el = document.getElementById("stream-status");
  if (el) el.textContent = `Live updates interrupted (${message}); reconnecting…`;
}

function age(created) {
  if (!created) return "";
  const s = Math.max(0, Math.floor((Date.now() - Date.parse(created)) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  if (s < 172800) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

const phase = (p) => `<span class="phase phase-${esc(p)}">${esc(p)}</span>`;

function crumbs(ns, session) {
  const parts = [];
  if (ns) parts.push(`<a href="#/ns/${encodeURIComponent(ns)}">${esc(ns)}</a>`);
  if (session) parts.push(esc(session));
  document.getElementById("crumbs").innerHTML = parts.join(" / ");
}

// ---------------------------------------------------------------------------------------------------- sign-in

function signIn(message) {
  view?.abort();
  sessionStorage.removeItem(TOKEN_KEY);
  document.getElementById("who").textContent = "";
  document.getElementById("sign-out").hidden = true;
  crumbs();
  main.innerHTML = `
    <h1>Sign in</h1>
    <p>Paste a Kubernetes bearer token (for example from <code>kubectl create token NAME</code>). It is kept in this
    tab's session storage only. Behind an auth proxy that sets the Authorization header, no token is needed.</p>
    ${message ? `<p class="notice error" id="sign-in-error">${esc(message)}</p>` : ""}
    <form id="sign-in" class="inline">
      <input id="token" type="password" autocomplete="off" placeholder="token" size="60" required>
      <button type="submit">Sign in</button>
    </form>`;
  document.getElementById("sign-in").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, document.getElementById("token").value.trim());
    route();
  });
}

document.getElementById("sign-out").addEventListener("click", () => signIn());

// ---------------------------------------------------------------------------------------------------- namespace

function namespacePicker(defaultNs) {
  crumbs();
  main.innerHTML = `
    <h1>Namespace</h1>
    <form id="pick-ns" class="inline">
      <input id="ns" value="${esc(defaultNs)}" required pattern="[a-z0-9]([-a-z0-9]*[a-z0-9])?">
      <button type="submit">Open</button>
    </form>`;
  document.getElementById("pick-ns").addEventListener("submit", (e) => {
    e.preventDefault();
    location.hash = `#/ns/${encodeURIComponent(document.getElementById("ns").value)}`;
  });
}

// ---------------------------------------------------------------------------------------------------- tree

function treeView(ns, signal) {
  crumbs(ns);
  const rows = new Map();
  const collapsed = new Set();
  const filter = { name: "", phase: "", blueprint: "" };
  main.innerHTML = `
    <div class="toolbar">
      <input id="filter-name" placeholder="filter by name" aria-label="filter by name">
      <select id="filter-phase" aria-label="filter by phase"><option value="">any phase</option>
        ${["Pending", "Running", "Idle", "Failed", "Stopped"].map((p) => `<option>${p}</option>`).join("")}</select>
      <select id="filter-blueprint" aria-label="filter by blueprint"><option value="">any blueprint</option></select>
      <button id="show-start" class="secondary">Start a session…</button>
      <span id="stream-status" class="muted"></span>
    </div>
    <form id="start-form" hidden>
      <div class="toolbar">
        <input id="start-name" placeholder="session name" required>
        <select id="start-blueprint"><option value="">default agent</option></select>
        <input id="start-dir" placeholder="project directory (optional)">
      </div>
      <textarea id="start-prompt" placeholder="prompt" required></textarea>
      <div class="toolbar"><button type="submit" id="start-submit">Start</button></div>
    </form>
    <div id="action-status"></div>
    <table id="tree"><thead><tr><th>Session</th><th>Phase</th><th>Current job</th><th>Queue</th><th>Jobs</th>
      <th>Age</th><th>Result</th></tr></thead><tbody></tbody></table>
    <p id="tree-empty" class="muted" hidden>No sessions in this namespace yet.</p>`;
  const tbody = main.querySelector("#tree tbody");

  let scheduled = false;
  const schedule = () => {
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(() => {
      scheduled = false;
      render();
    });
  };

  function visible(r) {
    return (
      (!filter.name || r.name.includes(filter.name)) &&
      (!filter.phase || r.phase === filter.phase) &&
      (!filter.blueprint || r.blueprint === filter.blueprint)
    );
  }

  function render() {
    const t0 = performance.now();
    const children = new Map();
    const roots = [];
    for (const r of rows.values()) {
      if (r.parent && rows.has(r.parent) && r.parent !== r.name) {
        if (!children.has(r.parent)) children.set(r.parent, []);
        children.get(r.parent).push(r);
      } else roots.push(r);
    }
    const order = (a, b) => (a.created || "").localeCompare(b.created || "") || a.name.localeCompare(b.name);
    roots.sort(order);
    const filtering = filter.name || filter.phase || filter.blueprint;
    // With a filter, a row shows when it or a descendant matches (so matches keep their place in the tree).
    const shown = new Map();
    const matches = (r, seen = new Set()) => {
      if (shown.has(r.name)) return shown.get(r.name);
      if (seen.has(r.name)) return false;
      seen.add(r.name);
      const m = visible(r) || (children.get(r.name) || []).some((c) => matches(c, seen));
      shown.set(r.name, m);
      return m;
    };
    const html = [];
    const seen = new Set();
    const walk = (r, depth) => {
      if (seen.has(r.name)) return;
      seen.add(r.name);
      if (filtering && !matches(r)) return;
      const kids = (children.get(r.name) || []).sort(order);
      const open = !collapsed.has(r.name);
      const href = `#/ns/${encodeURIComponent(ns)}/session/${encodeURIComponent(r.name)}`;
      html.push(
        `<tr data-session="${esc(r.name)}" data-phase="${esc(r.phase)}" data-jobs="${r.jobs}" data-parent="${esc(r.parent || "")}">` +
          `<td class="name" style="padding-left:${0.5 + depth * 1.4}rem">` +
          (kids.length
            ? `<button class="toggle" data-toggle="${esc(r.name)}" aria-label="${open ? "collapse" : "expand"}">${open ? "▾" : "▸"}</button>`
            : `<span class="toggle"></span>`) +
          `<a href="${href}">${esc(r.name)}</a></td><td>${phase(r.phase)}</td><td>${esc(r.currentJob || "")}</td>` +
          `<td>${r.queue}</td><td>${r.jobs}</td><td>${age(r.created)}</td><td class="preview" title="${esc(r.resultPreview || "")}">${esc(r.resultPreview || "")}</td></tr>`,
      );
      if (open) for (const k of kids) walk(k, depth + 1);
    };
    for (const r of roots) walk(r, 0);
    tbody.innerHTML = html.join("");
    document.getElementById("tree-empty").hidden = rows.size > 0;
    const now = Date.now();
    for (const r of rows.values()) {
      const key = `${r.name}:${r.phase}`;
      if (!(key in stats.phaseShownAt)) stats.phaseShownAt[key] = now;
    }
    stats.renders++;
    stats.lastRenderMs = performance.now() - t0;
    if (!stats.firstFullRenderAt && rows.size) {
      stats.firstFullRenderAt = performance.now();
      stats.snapshotToRenderMs = stats.firstFullRenderAt - stats.snapshotAt;
    }
    document.body.dataset.rows = String(rows.size);
    refreshBlueprints();
  }

  function refreshBlueprints() {
    const names = [...new Set([...rows.values()].map((r) => r.blueprint).filter(Boolean))].sort();
    for (const id of ["filter-blueprint", "start-blueprint"]) {
      const sel = document.getElementById(id);
      const have = [...sel.options].map((o) => o.value).filter(Boolean);
      if (have.join() === names.join()) continue;
      const keep = sel.value;
      sel.innerHTML = `<option value="">${id === "filter-blueprint" ? "any blueprint" : "default agent"}</option>` +
        names.map((n) => `<option>${esc(n)}</option>`).join("");
      sel.value = keep;
    }
  }

  tbody.addEventListener("click", (e) => {
    const name = e.target.closest("[data-toggle]")?.dataset.toggle;
    if (!name) return;
    if (collapsed.has(name)) collapsed.delete(name);
    else collapsed.add(name);
    schedule();
  });
  for (const [id, key] of [["filter-name", "name"], ["filter-phase", "phase"], ["filter-blueprint", "blueprint"]]) {
    document.getElementById(id).addEventListener("input", (e) => {
      filter[key] = e.target.value.trim();
      schedule();
    });
  }
  document.getElementById("show-start").addEventListener("click", () => {
    const f = document.getElementById("start-form");
    f.hidden = !f.hidden;
  });
  document.getElementById("start-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = {
      name: document.getElementById("start-name").value.trim(),
      prompt: document.getElementById("start-prompt").value,
      blueprint: document.getElementById("start-blueprint").value || null,
      projectDir: document.getElementById("start-dir").value.trim() || null,
    };
    await act(() => call(`/namespaces/${encodeURIComponent(ns)}/sessions`, { method: "POST", body }));
  });

  events(
    `/namespaces/${encodeURIComponent(ns)}/tree`,
    (type, data) => {
      document.getElementById("stream-status").textContent = "live";
      if (type === "snapshot") {
        if (!stats.snapshotAt) stats.snapshotAt = performance.now();
        rows.clear();
        for (const r of data.rows) rows.set(r.name, r);
      } else if (type === "upsert") rows.set(data.row.name, data.row);
      else if (type === "remove") rows.delete(data.name);
      schedule();
    },
    signal,
  );
}

// An action's outcome in #action-status: the gateway's answer, or the refusal with the API server's reason.
async function act(fn) {
  const box = document.getElementById("action-status");
  box.innerHTML = `<p class="notice muted">Working…</p>`;
  try {
    const res = await fn();
    box.innerHTML = `<p class="notice" id="action-ok">${esc(res.message)}</p>`;
    return true;
  } catch (e) {
    if (e instanceof Unauthorized) return signIn(e.message);
    box.innerHTML = `<p class="notice error" id="action-error">${esc(e.message)}</p>`;
    return false;
  }
}

// ---------------------------------------------------------------------------------------------------- session

function sessionView(ns, name, signal) {
  crumbs(ns, name);
  const base = `/namespaces/${encodeURIComponent(ns)}/sessions/${encodeURIComponent(name)}`;
  main.innerHTML = `
    <h1>${esc(name)} <span id="session-phase"></span></h1>
    <div id="links" class="toolbar"></div>
    <div id="actions" class="toolbar"></div>
    <div id="action-status"></div>
    <div id="facts"></div>
    <section><h2>Jobs</h2><div id="jobs"></div></section>
    <section><h2>Callbacks waiting</h2><div id="queue"></div></section>
    <section><h2>Conditions</h2><div id="conditions"></div></section>
    <section><h2>Events</h2><div id="events"></div></section>
    <section><h2>Conversation</h2><span id="stream-status" class="muted"></span><div id="conversation" class="conversation"></div></section>`;
  const link = (s) => `<a href="#/ns/${encodeURIComponent(ns)}/session/${encodeURIComponent(s)}">${esc(s)}</a>`;

  let loading = null;
  const load = async () => {
    if (loading) return loading;
    loading = (async () => {
      try {
        draw(await call(base, { signal }));
      } catch (e) {
        if (signal.aborted) return;
        if (e instanceof Unauthorized) return signIn(e.message);
        document.getElementById("facts").innerHTML = `<p class="notice error">${esc(e.message)}</p>`;
      } finally {
        loading = null;
      }
    })();
    return loading;
  };

  function draw(d) {
    const st = d.session?.status || {};
    const spec = d.session?.spec || {};
    const ph = st.phase || (d.jobs.length ? "Pending" : "");
    document.getElementById("session-phase").innerHTML = phase(ph);
    document.body.dataset.sessionPhase = ph;
    const parent = st.parentSessionName || spec.parentSessionName;
    document.getElementById("links").innerHTML =
      (parent ? `<span>Parent: <span id="parent-link">${link(parent)}</span></span>` : `<span class="muted">Root session</span>`) +
      (d.children.length ? `<span>Children: <span id="children-links">${d.children.map(link).join(", ")}</span></span>` : "");
    const running = d.jobs.some((j) => j.phase === "Pending" || j.phase === "Running");
    const actions = [];
    if (running) actions.push(`<button id="stop" class="danger">Stop</button>`);
    if (d.session && !running)
      actions.push(`<input id="resume-prompt" placeholder="prompt to resume with" size="50"><button id="resume">Resume</button>`);
    actions.push(`<button id="delete" class="secondary">Delete</button>`);
    const box = document.getElementById("actions");
    const prompt = document.getElementById("resume-prompt")?.value || "";
    box.innerHTML = actions.join("");
    if (document.getElementById("resume-prompt")) document.getElementById("resume-prompt").value = prompt;
    document.getElementById("stop")?.addEventListener("click", () => act(() => call(`${base}/stop`, { method: "POST" })).then(load));
    document.getElementById("resume")?.addEventListener("click", () =>
      act(() => call(`${base}/resume`, { method: "POST", body: { prompt: document.getElementById("resume-prompt").value } })).then(load),
    );
    document.getElementById("delete").addEventListener("click", () => {
      if (confirm(`Delete session ${name} and its jobs?`)) act(() => call(base, { method: "DELETE" }));
    });
    document.getElementById("facts").innerHTML = `<dl class="facts">
      <dt>Blueprint</dt><dd>${esc(spec.blueprint || "default")}</dd>
      <dt>Project directory</dt><dd>${esc(spec.projectDir || "")}</dd>
      <dt>Current job</dt><dd>${esc(st.currentJob || "")}</dd>
      <dt>Jobs</dt><dd>${st.jobCount ?? d.jobs.length}</dd>
      <dt>Result</dt><dd><pre>${esc(st.result || "")}</pre></dd></dl>`;
    const asked = (a) =>
      a.kind === "callback"
        ? `callback delivery of ${a.children.length ? a.children.map(link).join(", ") : esc(a.childJobs.join(", "))}`
        : a.kind === "parent"
          ? `parent agent ${link(a.session)}`
          : "a person";
    document.getElementById("jobs").innerHTML = `<table><thead><tr><th>Job</th><th>Type</th><th>Phase</th><th>Asked by</th>
      <th>Duration</th><th>Result or error</th></tr></thead><tbody>${d.jobs
        .map(
          (j) => `<tr data-job="${esc(j.name)}" data-phase="${esc(j.phase)}"><td>${esc(j.name)}</td><td>${esc(j.jobType)}</td>
          <td>${phase(j.phase)}${j.reason ? ` <span class="muted">${esc(j.reason)}</span>` : ""}</td><td>${asked(j.askedBy)}</td>
          <td>${j.durationSeconds != null ? `${j.durationSeconds}s` : ""}</td>
          <td>${j.error ? `<pre class="error">${esc(j.error)}</pre>` : ""}<pre>${esc(j.result || "")}</pre></td></tr>`,
        )
        .join("")}</tbody></table>`;
    const queue = st.callbackQueue || [];
    document.getElementById("queue").innerHTML = queue.length
      ? `<table><tbody>${queue
          .map((q) => `<tr><td>${link(q.childSession)}</td><td>${esc(q.childJob)}</td><td>${esc(q.outcome)}</td><td>${esc(q.enqueueTime)}</td><td><pre>${esc(q.result || q.error || "")}</pre></td></tr>`)
          .join("")}</tbody></table>`
      : `<p class="muted">None.</p>`;
    const conds = st.conditions || [];
    document.getElementById("conditions").innerHTML = conds.length
      ? `<table><tbody>${conds
          .map((c) => `<tr><td>${esc(c.type)}</td><td>${esc(c.status)}</td><td>${esc(c.reason)}</td><td>${esc(c.message)}</td><td>${esc(c.lastTransitionTime)}</td></tr>`)
          .join("")}</tbody></table>`
      : `<p class="muted">None.</p>`;
    document.getElementById("events").innerHTML = d.events.length
      ? `<table><tbody>${d.events
          .map((e) => `<tr><td>${esc(e.time)}</td><td>${esc(e.type)}</td><td>${esc(e.reason)}</td><td>${esc(e.kind)} ${esc(e.object)}</td><td>${esc(e.message)}</td></tr>`)
          .join("")}</tbody></table>`
      : `<p class="muted">None.</p>`;
  }

  const conv = document.getElementById("conversation");
  const item = (cls, label, body) => {
    const div = document.createElement("div");
    div.className = `item ${cls}`;
    div.innerHTML = `<div class="label">${esc(label)}</div>${body}`;
    conv.appendChild(div);
  };
  const toolNames = new Map();
  events(
    `${base}/conversation`,
    (type, it) => {
      document.getElementById("stream-status").textContent = "live";
      switch (it.kind) {
        case "job":
          item("job", `${it.jobType} job ${it.name} (${it.phase})`, `<pre>${esc(it.prompt)}</pre>`);
          load();
          break;
        case "init":
          item("log", "run starts", `<pre>${esc([it.model, it.cwd].filter(Boolean).join(" in "))}</pre>`);
          break;
        case "text":
          item("text", "assistant", `<pre>${esc(it.text)}</pre>`);
          break;
        case "thinking":
          item("thinking", "thinking", `<pre>${esc(it.text)}</pre>`);
          break;
        case "toolCall":
          toolNames.set(it.id, it.name);
          item("tool-call", `tool call ${it.name}`, `<pre>${esc(JSON.stringify(it.input, null, 2))}</pre>`);
          break;
        case "toolResult":
          item(`tool-result${it.isError ? " is-error" : ""}`, `result of ${toolNames.get(it.id) || it.id}`, `<pre>${esc(it.content)}</pre>`);
          break;
        case "error":
          item("error", "error", `<pre>${esc(it.text)}</pre>`);
          break;
        case "result":
          item(`result${it.isError ? " is-error" : ""}`, it.isError ? "run failed" : "final result", `<pre>${esc(it.text)}</pre>`);
          load();
          break;
        default:
          item("log", "log", `<pre>${esc(it.text)}</pre>`);
      }
    },
    signal,
  );
  // The tree feed says when this session or a child changes: reload the page's data then.
  events(
    `/namespaces/${encodeURIComponent(ns)}/tree`,
    (type, data) => {
      if (type === "snapshot" || data.row?.name === name || data.row?.parent === name || data.name === name) load();
    },
    signal,
  );
  load();
}

// ---------------------------------------------------------------------------------------------------- routing

async function route() {
  view?.abort();
  view = new AbortController();
  const signal = view.signal;
  let me;
  try {
    me = await call("/whoami", { signal });
  } catch (e) {
    if (signal.aborted) return;
    return signIn(e instanceof Unauthorized ? (token() ? e.message : "") : e.message);
  }
  document.getElementById("who").textContent = me.user;
  document.getElementById("sign-out").hidden = !token();
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  if (parts[0] === "ns" && parts[1] && parts[2] === "session" && parts[3]) sessionView(parts[1], parts[3], signal);
  else if (parts[0] === "ns" && parts[1]) treeView(parts[1], signal);
  else namespacePicker(me.namespace);
}

window.addEventListener("hashchange", route);
route();
