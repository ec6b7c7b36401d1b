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
// firstFullRenderAt: ms after navigation when the first non-empty tree was in the page (its rows built);
// firstPaintAt: when the browser had laid it out and painted it; snapshotToRenderMs: from the snapshot's arrival to
// the rows built.
const stats = (window.dashboard = {
  renders: 0,
  lastRenderMs: 0,
  firstFullRenderAt: 0,
  firstPaintAt: 0,
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
      // Where to look for the end of the frame: a big frame (a snapshot) arrives in many chunks, and each chunk's
      // text is searched once, not the whole buffer again.
      let from = 0;
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let end;
        while ((end = buf.indexOf("\n\n", from)) >= 0) {
          const frame = buf.slice(0, end);
          buf = buf.slice(end + 2);
          from = 0;
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
        from = Math.max(0, buf.length - 1);
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

// The tree is built in one pass (one innerHTML) only when its shape changes: a snapshot, a new or removed session,
// a new parent. A change to a session's own fields replaces its one row; filters and expand/collapse only toggle
// the rows' hidden attribute. So 1,000 sessions cost one parse and one layout, and each live change one row.
function treeView(ns, signal) {
  crumbs(ns);
  const rows = new Map(); // name -> row as the feed sent it
  const trs = new Map(); // name -> its <tr>
  const collapsed = new Set();
  const filter = { name: "", phase: "", blueprint: "" };
  // The shape on the page: rows in display order, each with its depth and the row it is nested under.
  let order = [];
  let placed = new Map(); // name -> its entry in order
  let children = new Map();
  let reshape = true;
  const changed = new Set();
  main.innerHTML = `
    <div class="toolbar">
      <input id="filter-name" placeholder="filter by name" aria-label="filter by name">
      <select id="filter-phase" aria-label="filter by phase"><option value="">any phase</option>
        ${["Pending", "Running", "Idle", "Failed", "Stopped"].map((p) => `<option>${p}</option>`).join("")}</select>
      <select id="filter-blueprint" aria-label="filter by blueprint"><option value="">any blueprint</option></select>
      <button id="show-start" class="secondary">Start a session…</button>
      <span id="stream-status" class="muted">connecting…</span>
      <span id="tree-count" class="muted"></span>
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
  const template = document.createElement("template");

  let scheduled = false;
  const schedule = () => {
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(() => {
      scheduled = false;
      render();
    });
  };

  // Oldest first, then by name (plain string order: RFC 3339 times sort as text, and no collation is needed).
  const cmp = (a, b) => (a < b ? -1 : a > b ? 1 : 0);
  const byAge = (a, b) => cmp(a.created || "", b.created || "") || cmp(a.name, b.name);

  function rowHtml(r, depth, hasKids) {
    const open = !collapsed.has(r.name);
    const href = `#/ns/${encodeURIComponent(ns)}/session/${encodeURIComponent(r.name)}`;
    const preview = esc(r.resultPreview);
    return (
      `<tr data-session="${esc(r.name)}" data-phase="${esc(r.phase)}" data-jobs="${r.jobs}" data-parent="${esc(r.parent)}">` +
      `<td class="name" style="padding-left:${0.5 + depth * 1.4}rem">` +
      (hasKids
        ? `<button class="toggle" data-toggle="${esc(r.name)}" aria-label="${open ? "collapse" : "expand"}">${open ? "▾" : "▸"}</button>`
        : `<span class="toggle"></span>`) +
      `<a href="${href}">${esc(r.name)}</a></td><td>${phase(r.phase)}</td><td>${esc(r.currentJob)}</td>` +
      `<td>${r.queue}</td><td>${r.jobs}</td><td class="age" data-created="${esc(r.created)}">${age(r.created)}</td>` +
      `<td class="preview" title="${preview}">${preview}</td></tr>`
    );
  }

  // Display order: roots by creation, each followed by its descendants. A row whose parent is not here is a root;
  // rows caught in a parent cycle (bad data) are shown as roots too rather than lost.
  function shape() {
    children = new Map();
    const roots = [];
    for (const r of rows.values()) {
      if (r.parent && r.parent !== r.name && rows.has(r.parent)) {
        if (!children.has(r.parent)) children.set(r.parent, []);
        children.get(r.parent).push(r);
      } else roots.push(r);
    }
    for (const list of children.values()) list.sort(byAge);
    roots.sort(byAge);
    order = [];
    placed = new Map();
    const seen = new Set();
    const walk = (r, depth, under) => {
      if (seen.has(r.name)) return;
      seen.add(r.name);
      const entry = { r, depth, under };
      order.push(entry);
      placed.set(r.name, entry);
      for (const k of children.get(r.name) || []) walk(k, depth + 1, r.name);
    };
    for (const r of roots) walk(r, 0, null);
    if (seen.size < rows.size) for (const r of [...rows.values()].sort(byAge)) walk(r, 0, null);
  }

  function build() {
    shape();
    tbody.innerHTML = order.map((o) => rowHtml(o.r, o.depth, (children.get(o.r.name) || []).length > 0)).join("");
    trs.clear();
    let tr = tbody.firstElementChild;
    for (const o of order) {
      trs.set(o.r.name, tr);
      tr = tr.nextElementSibling;
    }
  }

  function patch(name) {
    const o = placed.get(name);
    o.r = rows.get(name);
    template.innerHTML = rowHtml(o.r, o.depth, (children.get(name) || []).length > 0);
    const tr = template.content.firstElementChild;
    trs.get(name).replaceWith(tr);
    trs.set(name, tr);
  }

  function matches(r) {
    return (
      (!filter.name || r.name.includes(filter.name)) &&
      (!filter.phase || r.phase === filter.phase) &&
      (!filter.blueprint || r.blueprint === filter.blueprint)
    );
  }

  // With a filter, a row shows when it or a descendant matches (so matches keep their place in the tree); under a
  // collapsed row, nothing shows. Only rows whose state changes are touched.
  function applyVisibility() {
    const filtering = filter.name || filter.phase || filter.blueprint;
    const keep = new Map();
    for (let i = order.length - 1; i >= 0; i--) {
      const { r } = order[i];
      let k = !filtering || matches(r);
      if (!k) for (const c of children.get(r.name) || []) if (keep.get(c.name)) { k = true; break; }
      keep.set(r.name, k);
    }
    const shown = new Set();
    for (const { r, under } of order) {
      const show = keep.get(r.name) && (under === null || (shown.has(under) && !collapsed.has(under)));
      if (show) shown.add(r.name);
      const tr = trs.get(r.name);
      if (tr.hidden === show) tr.hidden = !show;
    }
    document.getElementById("tree-count").textContent =
      rows.size ? (shown.size === rows.size ? `${rows.size} sessions` : `${shown.size} of ${rows.size} sessions shown`) : "";
  }

  function render() {
    const t0 = performance.now();
    const full = reshape;
    if (reshape) build();
    else for (const name of changed) patch(name);
    reshape = false;
    applyVisibility();
    document.getElementById("tree-empty").hidden = rows.size > 0;
    const now = Date.now();
    for (const r of full ? rows.values() : [...changed].map((n) => rows.get(n))) {
      const key = `${r.name}:${r.phase}`;
      if (!(key in stats.phaseShownAt)) stats.phaseShownAt[key] = now;
    }
    changed.clear();
    stats.renders++;
    stats.lastRenderMs = performance.now() - t0;
    if (!stats.firstFullRenderAt && rows.size) {
      stats.firstFullRenderAt = performance.now();
      stats.snapshotToRenderMs = stats.firstFullRenderAt - stats.snapshotAt;
      // A task after this frame runs once the browser has laid out and painted it.
      setTimeout(() => (stats.firstPaintAt = performance.now()), 0);
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

  // Ages move on without any event: refresh the shown ones now and then.
  const ages = setInterval(() => {
    for (const td of tbody.querySelectorAll("tr:not([hidden]) td.age")) {
      const a = age(td.dataset.created);
      if (td.textContent !== a) td.textContent = a;
    }
  }, 10000);
  signal.addEventListener("abort", () => clearInterval(ages));

  tbody.addEventListener("click", (e) => {
    const button = e.target.closest("[data-toggle]");
    if (!button) return;
    const name = button.dataset.toggle;
    if (collapsed.has(name)) collapsed.delete(name);
    else collapsed.add(name);
    const open = !collapsed.has(name);
    button.textContent = open ? "▾" : "▸";
    button.setAttribute("aria-label", open ? "collapse" : "expand");
    applyVisibility();
  });
  for (const [id, key] of [["filter-name", "name"], ["filter-phase", "phase"], ["filter-blueprint", "blueprint"]]) {
    document.getElementById(id).addEventListener("input", (e) => {
      filter[key] = e.target.value.trim();
      applyVisibility();
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

  // Whether a changed row moves in the tree (a new parent, or a new creation time, which orders siblings).
  const moves = (old, r) => !old || old.parent !== r.parent || old.created !== r.created;

  events(
    `/namespaces/${encodeURIComponent(ns)}/tree`,
    (type, data) => {
      document.getElementById("stream-status").textContent = "live";
      if (type === "snapshot") {
        if (!stats.snapshotAt) stats.snapshotAt = performance.now();
        rows.clear();
        for (const r of data.rows) rows.set(r.name, r);
        reshape = true;
      } else if (type === "upsert") {
        if (moves(rows.get(data.row.name), data.row)) reshape = true;
        else changed.add(data.row.name);
        rows.set(data.row.name, data.row);
      } else if (type === "remove") {
        rows.delete(data.name);
        changed.delete(data.name);
        reshape = true;
      }
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
    <div id="facts"><p class="muted">Loading…</p></div>
    <section><h2>Jobs</h2><div id="jobs"><p class="muted">Loading…</p></div></section>
    <section><h2>Callbacks waiting</h2><div id="queue"><p class="muted">Loading…</p></div></section>
    <section><h2>Conditions</h2><div id="conditions"><p class="muted">Loading…</p></div></section>
    <section><h2>Events</h2><div id="events"><p class="muted">Loading…</p></div></section>
    <section><h2>Conversation</h2><span id="stream-status" class="muted"></span><div id="conversation" class="conversation"></div></section>`;
  const link = (s) => `<a href="#/ns/${encodeURIComponent(ns)}/session/${encodeURIComponent(s)}">${esc(s)}</a>`;

  // One load at a time; a change seen while one is under way loads once more after it (else that change would be
  // missed until the next one).
  let loading = null;
  let again = false;
  const load = async () => {
    if (loading) {
      again = true;
      return loading;
    }
    loading = (async () => {
      try {
        do {
          again = false;
          draw(await call(base, { signal }));
        } while (again && !signal.aborted);
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
          .map((q) => `<tr><td>${link(q.childSession)}</td><td>${esc(q.childJob)}</td><td>${esc(q.outcome)}</td><td class="time">${esc(q.enqueueTime)}</td><td><pre>${esc(q.result || q.error || "")}</pre></td></tr>`)
          .join("")}</tbody></table>`
      : `<p class="muted">None.</p>`;
    const conds = st.conditions || [];
    document.getElementById("conditions").innerHTML = conds.length
      ? `<table><tbody>${conds
          .map((c) => `<tr><td>${esc(c.type)}</td><td>${esc(c.status)}</td><td>${esc(c.reason)}</td><td>${esc(c.message)}</td><td class="time">${esc(c.lastTransitionTime)}</td></tr>`)
          .join("")}</tbody></table>`
      : `<p class="muted">None.</p>`;
    document.getElementById("events").innerHTML = d.events.length
      ? `<table><tbody>${d.events
          .map((e) => `<tr><td class="time">${esc(e.time)}</td><td>${esc(e.type)}</td><td>${esc(e.reason)}</td><td>${esc(e.kind)} ${esc(e.object)}</td><td>${esc(e.message)}</td></tr>`)
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
