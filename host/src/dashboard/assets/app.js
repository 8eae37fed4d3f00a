// The streamhost dashboard: draws the pages from /api/* JSON. Every value
// from Redis goes into the page through textContent, never as HTML.
"use strict";

const state = { session: null, timer: null };

// What a replay left behind besides the entries it moved.
function replayNotes(r) {
  const notes = [];
  if (r.gone) notes.push(r.gone + " already gone");
  if (r.not_replayable) notes.push(r.not_replayable + " not replayable");
  if (r.unknown) notes.push(r.unknown + " outcome unknown (check again)");
  return notes.length ? " (" + notes.join(", ") + ")" : "";
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function svgEl(tag, attrs) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

function ago(ms) {
  if (ms === null || ms === undefined) return "–";
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return s + " s";
  if (s < 3600) return Math.round(s / 60) + " min";
  if (s < 86400) return Math.round(s / 3600) + " h";
  return Math.round(s / 86400) + " d";
}
const agoAt = (atMs, now) => ago((now || Date.now()) - atMs) + " ago";
const when = (ms) => new Date(ms).toLocaleString();
const short = (digest) => (digest || "").replace(/^sha256:/, "").slice(0, 12);
const enc = encodeURIComponent;

async function getJson(path) {
  const r = await fetch(path, { credentials: "same-origin" });
  const body = await r.json().catch(() => ({ error: "bad reply " + r.status }));
  if (!r.ok) throw new Error(body.error || "HTTP " + r.status);
  return body;
}

function say(text, kind) {
  const s = document.getElementById("status");
  s.textContent = text;
  s.className = kind || "";
}

async function act(path, body) {
  const headers = { "content-type": "application/json" };
  if (state.session && state.session.csrf) headers["x-csrf-token"] = state.session.csrf;
  const r = await fetch(path, { method: "POST", credentials: "same-origin", headers, body: JSON.stringify(body || {}) });
  const reply = await r.json().catch(() => ({ error: "bad reply " + r.status }));
  if (!r.ok) {
    say("Refused: " + (reply.error || r.status), "error");
    throw new Error(reply.error || String(r.status));
  }
  return reply;
}

const canAct = () => state.session && state.session.actions && state.session.csrf;

function actionButton(label, cls, testid, onclick) {
  const b = el("button", { class: cls, "data-testid": testid, disabled: !canAct(), title: canAct() ? null : "sign in to act" }, label);
  b.addEventListener("click", async () => {
    b.disabled = true;
    try { await onclick(); } catch (e) { /* said */ } finally { b.disabled = !canAct(); }
  });
  return b;
}

// ---- header: which host, sign-in ----

async function loadSession() {
  state.session = await getJson("/api/session");
  const h = state.session.host;
  document.getElementById("host").textContent =
    "host " + h.hostname + " (pid " + h.pid + ", v" + h.version + ", consumer " + h.consumers.join(", ") + ")";
  drawAuth();
}

function drawAuth() {
  const box = document.getElementById("auth");
  box.replaceChildren();
  const s = state.session;
  if (!s.actions) {
    box.append(el("span", { class: "muted", "data-testid": "read-only" }, "read-only (no [admin] token)"));
  } else if (s.user) {
    box.append("signed in as ", el("b", { "data-testid": "user" }, s.user), " ",
      el("button", { onclick: async () => { await act("/api/logout"); await loadSession(); route(); } }, "sign out"));
  } else {
    const user = el("input", { name: "user", placeholder: "your name", "data-testid": "login-user", autocomplete: "username" });
    const token = el("input", { name: "token", type: "password", placeholder: "[admin] token", "data-testid": "login-token", autocomplete: "current-password" });
    const form = el("form", { class: "inline", "data-testid": "login" }, user, token, el("button", { type: "submit" }, "sign in"));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        await act("/api/login", { user: user.value, token: token.value });
        await loadSession();
        say("Signed in.", "done");
        route();
      } catch (e) { /* said */ }
    });
    box.append(form);
  }
}

// ---- overview ----

function chart(history, sample) {
  const svg = svgEl("svg", { class: "chart", viewBox: "0 0 180 36", preserveAspectRatio: "none", "data-testid": "chart" });
  const rates = (key) => history.slice(1).map((p, i) => {
    const prev = history[i];
    const dt = Math.max(1, (p.at_ms - prev.at_ms) / 1000);
    return Math.max(0, (p[key] - prev[key]) / dt);
  });
  const inR = rates("received"), ackR = rates("acked");
  const max = Math.max(1, ...inR, ...ackR);
  const n = Math.max(1, 900 / sample);
  const line = (values, cls) => {
    const pts = values.map((v, i) => {
      const x = 180 - (values.length - 1 - i) * (180 / n);
      return x.toFixed(1) + "," + (34 - (v / max) * 32).toFixed(1);
    });
    svg.append(svgEl("polyline", { class: cls, points: pts.join(" ") }));
  };
  line(inR, "in");
  line(ackR, "acked");
  const last = (a) => (a.length ? a[a.length - 1] : 0).toFixed(1);
  return el("div", {}, svg, el("div", { class: "muted" },
    el("span", { class: "legend-in" }, "in " + last(inR) + "/s"), " · ",
    el("span", { class: "legend-acked" }, "acked " + last(ackR) + "/s")));
}

function failures(f) {
  const parts = Object.entries(f).filter(([, n]) => n > 0).map(([k, n]) => k + " " + n);
  return parts.length ? parts.join(", ") : "none";
}

async function overview() {
  const o = await getJson("/api/overview");
  const rows = o.plugins.map((p) => {
    const f = p.fleet || {};
    const attention = p.attention.length > 0;
    return el("tr", { class: attention ? "attention" : null, "data-testid": "plugin-row", "data-plugin": p.name },
      el("td", {}, el("a", { href: "#/plugin/" + enc(p.name), "data-testid": "plugin-link" }, p.name),
        p.attention.map((a) => el("div", {}, el("span", { class: "badge", "data-testid": "attention" }, a)))),
      el("td", { class: "mono" }, p.stream, el("div", { class: "muted" }, "group " + p.group)),
      el("td", { class: "mono" }, f.version ? "v" + f.version : "config file",
        el("div", { class: "muted", title: f.digest || p.running_digest }, short(f.digest || p.running_digest))),
      el("td", {}, chart(p.history, o.sample_s)),
      el("td", { "data-testid": "lag" }, f.lag ?? "–"),
      el("td", { "data-testid": "pending" }, f.pending ?? "–"),
      el("td", { "data-testid": "oldest" }, ago(f.oldest_pending_age_ms)),
      el("td", {}, el("a", { href: "#/dlq/" + enc(p.name), "data-testid": "dlq-count", class: f.dlq > 0 ? "bad" : null }, f.dlq ?? "–")),
      el("td", { "data-testid": "acked" }, p.local.acked),
      el("td", { "data-testid": "failures" }, failures(p.local.failures)),
      el("td", { "data-testid": "retries" }, p.local.retries_waiting),
      el("td", {}, p.local.in_flight + " / " + p.local.workers_busy + " of " + p.local.workers));
  });
  const banner = o.redis.up ? null : el("div", { class: "banner", "data-testid": "redis-down" }, "Redis unreachable: " + (o.redis.error || "no connection"));
  return [
    el("h1", {}, "Overview"),
    banner,
    el("div", { class: "note" }, "Lag, pending, oldest pending age and DLQ size are fleet-wide (from Redis); charts, acked, failures, retries and in-flight are this host's, over the last " + Math.round(o.window_s / 60) + " minutes."),
    el("table", { "data-testid": "overview" },
      el("thead", {}, el("tr", {}, ["plugin", "source", "version", "entries/s (15 min)", "lag", "pending", "oldest pending", "DLQ", "acked here", "failures here", "retries waiting", "in flight / busy"].map((h) => el("th", {}, h)))),
      el("tbody", {}, rows)),
  ];
}

// ---- plugin page ----

async function pluginPage(name) {
  const p = await getJson("/api/plugins/" + enc(name));
  const paused = p.paused;
  const pauseBar = el("div", { class: "bar" },
    paused ? el("span", { class: "bad", "data-testid": "paused" }, "paused by " + paused.by + " " + agoAt(paused.at_ms))
           : el("span", { class: "ok", "data-testid": "running" }, "running"),
    paused ? actionButton("Resume", "primary", "resume", async () => { await act("/api/plugins/" + enc(name) + "/resume"); say("Resumed " + name + ".", "done"); route(); })
           : actionButton("Pause", "danger", "pause", async () => { await act("/api/plugins/" + enc(name) + "/pause"); say("Paused " + name + " on every host.", "done"); route(); }),
    el("a", { href: "#/dlq/" + enc(name), "data-testid": "dlq-link" }, "dead letters"));
  const consumers = el("table", { "data-testid": "consumers" },
    el("tr", {}, ["consumer", "pending", "idle"].map((h) => el("th", {}, h))),
    p.consumers.map((c) => el("tr", {}, el("td", { class: "mono" }, c.name, c.this_host ? el("span", { class: "kind" }, "this host") : null), el("td", {}, c.pending), el("td", {}, ago(c.idle_ms)))));
  const retries = el("table", { "data-testid": "retries" },
    el("tr", {}, ["entry", "next attempt"].map((h) => el("th", {}, h))),
    p.retries.soonest.map((r) => el("tr", {}, el("td", { class: "mono" }, r.id), el("td", {}, when(r.due_ms) + " (in " + ago(r.due_ms - Date.now()) + ")"))));
  const scheduled = el("table", { "data-testid": "scheduled" },
    el("tr", {}, ["due", "size"].map((h) => el("th", {}, h))),
    p.scheduled.soonest.map((s) => el("tr", {}, el("td", {}, when(s.due_ms)), el("td", {}, s.bytes + " bytes"))));
  const versions = el("table", { "data-testid": "versions" },
    el("tr", {}, ["version", "digest", "action", "by", "when", ""].map((h) => el("th", {}, h))),
    p.versions.map((v) => el("tr", {},
      el("td", {}, "v" + v.version, v.current ? el("span", { class: "kind" }, "current") : null),
      el("td", { class: "mono", title: v.digest }, short(v.digest)), el("td", {}, v.action), el("td", {}, v.by), el("td", {}, agoAt(v.at_ms)),
      el("td", {}, v.current ? null : actionButton("Roll back to v" + v.version, "", "rollback-" + v.version, async () => {
        const r = await act("/api/plugins/" + enc(name) + "/rollback", { version: v.version });
        say("Rolled back: now v" + r.version + ".", "done"); route();
      })))));
  const refusals = p.refusals.length ? [el("h2", {}, "Refused versions"), el("table", {},
    el("tr", {}, ["host", "digest", "error", "when"].map((h) => el("th", {}, h))),
    p.refusals.map((r) => el("tr", { class: "attention" }, el("td", {}, r.host), el("td", { class: "mono" }, short(r.digest)), el("td", {}, el("pre", {}, r.error)), el("td", {}, agoAt(r.at_ms)))))] : [];
  return [
    el("h1", {}, "Plugin ", el("span", { "data-testid": "plugin-name" }, p.name)),
    el("div", { class: "muted mono" }, "stream " + p.stream + " · group " + p.group + " · DLQ " + p.dlq_stream + " · running " + short(p.running_digest)),
    pauseBar,
    el("h2", {}, "Consumers (fleet)"), consumers,
    el("h2", {}, "Retries waiting on this host (" + p.retries.waiting + ")"), retries,
    el("h2", {}, "Scheduled entries (" + p.scheduled.total + ")"), scheduled,
    el("h2", {}, "Versions"), p.versions.length ? versions : el("p", { class: "muted" }, "never deployed: running the config file's component"),
    ...refusals,
  ];
}

// ---- dead letters ----

async function dlqPage(name, params) {
  const q = new URLSearchParams();
  for (const k of ["reason", "text", "before"]) if (params.get(k)) q.set(k, params.get(k));
  const page = await getJson("/api/plugins/" + enc(name) + "/dlq?" + q);
  const reason = el("select", { name: "reason", "data-testid": "filter-reason" }, el("option", { value: "" }, "any reason"),
    page.reasons.map((r) => el("option", { value: r.reason, selected: params.get("reason") === r.reason }, r.reason + " (" + r.count + ")")));
  const text = el("input", { name: "text", placeholder: "text in fields or error", value: params.get("text") || "", "data-testid": "filter-text" });
  const filter = el("form", { class: "inline", "data-testid": "filter" }, reason, text, el("button", { type: "submit" }, "filter"));
  filter.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const n = new URLSearchParams();
    if (reason.value) n.set("reason", reason.value);
    if (text.value) n.set("text", text.value);
    location.hash = "#/dlq/" + enc(name) + "?" + n;
  });
  const boxes = [];
  const rows = page.letters.map((d) => {
    const box = el("input", { type: "checkbox", value: d.id, "data-testid": "select" });
    boxes.push(box);
    return el("tr", { "data-testid": "letter", "data-id": d.id },
      el("td", {}, box),
      el("td", { title: when(d.time_ms) }, agoAt(d.time_ms, page.now_ms)),
      el("td", { "data-testid": "reason" }, d.reason),
      el("td", {}, d.attempts),
      el("td", { class: "mono" }, d.source_id),
      el("td", {}, el("pre", {}, d.error)),
      el("td", {}, el("a", { href: "#/msg/" + enc(name) + "/" + enc(d.id), "data-testid": "open" }, "open")));
  });
  const replaySelected = actionButton("Replay selected", "primary", "replay-selected", async () => {
    const ids = boxes.filter((b) => b.checked).map((b) => b.value);
    if (!ids.length) { say("Select dead letters first.", "error"); return; }
    const r = await act("/api/plugins/" + enc(name) + "/dlq/replay", { ids });
    say("Replayed " + r.replayed + " of " + r.asked + replayNotes(r) + ".", "done"); route();
  });
  const replayAll = actionButton("Replay all matching (" + page.total + ")", "", "replay-all", async () => {
    const r = await act("/api/plugins/" + enc(name) + "/dlq/replay", { all: true, reason: params.get("reason") || null, text: params.get("text") || null });
    say("Replayed " + r.replayed + " of " + page.total + replayNotes(r) + ".", "done"); route();
  });
  const date = el("input", { type: "datetime-local", "data-testid": "purge-before" });
  const purge = actionButton("Purge older than", "danger", "purge", async () => {
    if (!date.value) { say("Pick a date first.", "error"); return; }
    const r = await act("/api/plugins/" + enc(name) + "/dlq/purge", { before_ms: new Date(date.value).getTime() });
    say("Purged " + r.purged + ".", "done"); route();
  });
  const next = page.next ? el("a", { href: "#/dlq/" + enc(name) + "?" + new URLSearchParams({ ...Object.fromEntries(q), before: page.next }), "data-testid": "next" }, "older →") : null;
  return [
    el("h1", {}, "Dead letters of ", el("a", { href: "#/plugin/" + enc(name) }, name)),
    el("div", { class: "muted mono" }, page.dlq_stream),
    el("div", { class: "bar" }, filter, el("span", { "data-testid": "total" }, page.total + " matching")),
    el("div", { class: "bar" }, replaySelected, replayAll, date, purge),
    el("table", { "data-testid": "letters" },
      el("tr", {}, ["", "time", "reason", "attempts", "source id", "error", ""].map((h) => el("th", {}, h))), rows),
    page.letters.length ? null : el("p", { class: "muted", "data-testid": "empty" }, "No dead letters match."),
    next,
  ];
}

async function messagePage(name, id) {
  const m = await getJson("/api/plugins/" + enc(name) + "/dlq/" + enc(id));
  const s = m.summary;
  return [
    el("h1", {}, "Dead letter ", el("span", { class: "mono" }, s.id)),
    el("div", { class: "bar" },
      el("a", { href: "#/dlq/" + enc(name) }, "← dead letters of " + name),
      actionButton("Replay", "primary", "replay-one", async () => {
        const r = await act("/api/plugins/" + enc(name) + "/dlq/replay", { ids: [s.id] });
        say("Replayed " + r.replayed + ".", "done");
        location.hash = "#/dlq/" + enc(name);
      })),
    el("p", {}, "reason ", el("b", {}, s.reason), " · attempts " + s.attempts + " · source id ", el("span", { class: "mono" }, s.source_id), " · " + agoAt(s.time_ms)),
    el("h2", {}, "Fields"),
    el("table", { "data-testid": "fields" }, el("tr", {}, el("th", {}, "name"), el("th", {}, "value")),
      m.fields.map((f) => el("tr", { "data-testid": "field", "data-kind": f.value.kind },
        el("td", { class: "mono" }, f.name, el("span", { class: "kind" }, f.value.kind + ", " + f.value.bytes + " bytes" + (f.value.truncated ? ", cut" : ""))),
        el("td", {}, el("pre", { "data-testid": "value" }, f.value.text))))),
    el("h2", {}, "Metadata"),
    el("table", {}, m.metadata.map((f) => el("tr", {}, el("td", { class: "mono" }, f.name), el("td", {}, el("pre", {}, f.value))))),
  ];
}

// ---- routing ----

async function route() {
  clearTimeout(state.timer);
  const hash = location.hash.slice(1) || "/";
  const [path, query] = hash.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const params = new URLSearchParams(query || "");
  const main = document.getElementById("main");
  try {
    let view;
    if (parts[0] === "plugin") view = await pluginPage(parts[1]);
    else if (parts[0] === "dlq") view = await dlqPage(parts[1], params);
    else if (parts[0] === "msg") view = await messagePage(parts[1], parts[2]);
    else {
      view = await overview();
      state.timer = setTimeout(route, 5000);
    }
    main.replaceChildren(...view.flat().filter((v) => v));
    main.setAttribute("data-page", parts[0] || "overview");
  } catch (e) {
    main.replaceChildren(el("div", { class: "banner", "data-testid": "error" }, String(e.message || e)));
  }
}

window.addEventListener("hashchange", () => { say(""); route(); });
window.addEventListener("DOMContentLoaded", async () => {
  try { await loadSession(); } catch (e) { say("Cannot reach the host: " + e.message, "error"); }
  route();
});
