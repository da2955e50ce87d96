// The mesh page (managers): the service graph, the event flow and a reservation's trace. It reads
// what ONE sampler in the web service measured (GET /mesh/state, every few seconds); the page
// itself never talks to Envoy, a service, NATS or Jaeger. The token is the board's (sessionStorage).
"use strict";
(() => {
  const TOKEN_KEY = "cinema.token";
  const SVG = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);
  const state = { token: sessionStorage.getItem(TOKEN_KEY), timer: null, interval: 3000, fetches: 0, bytes: 0 };

  // Where each node sits: columns from the outside in, rows within a column.
  const COLUMNS = [
    ["client"],
    ["ingress"],
    ["web", "gateway", "identity"],
    ["reservation", "movie", "review", "viewpage", "notification"],
    ["payment"],
    ["postgres", "mongo", "redis", "nats"],
  ];
  const WIDTH = 1600, HEIGHT = 600, BOX_W = 124, BOX_H = 54;

  function place(names) {
    const at = {};
    const extra = names.filter((n) => !COLUMNS.some((c) => c.includes(n)));
    const columns = COLUMNS.map((c, i) => (i === 3 ? [...c, ...extra] : c).filter((n) => names.includes(n)));
    columns.forEach((column, i) => {
      const x = 90 + i * ((WIDTH - 180) / (COLUMNS.length - 1));
      column.forEach((name, j) => { at[name] = { x, y: (HEIGHT / (column.length + 1)) * (j + 1) }; });
    });
    return at;
  }

  const pct = (r) => (r === null || r === undefined ? "–" : `${(r * 100).toFixed(r > 0 && r < 0.01 ? 2 : 1)} %`);
  const num = (v, digits = 1) => (v === null || v === undefined ? "–" : Number(v).toFixed(digits));
  const ms = (v) => (v === null || v === undefined ? "–" : `${Number(v).toFixed(v < 10 ? 1 : 0)} ms`);

  function el(name, attrs = {}, text) {
    const node = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function cell(row, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    row.appendChild(td);
  }

  function fill(tableId, rows) {
    const body = $(tableId).querySelector("tbody");
    body.replaceChildren(...rows);
  }

  function drawGraph(view) {
    const svg = $("graph");
    const names = view.nodes.map((n) => n.name);
    const at = place(names);
    const edges = el("g", { class: "edges" });
    const nodes = el("g", { class: "nodes" });
    for (const e of view.edges) {
      const a = at[e.source], b = at[e.target];
      if (!a || !b) continue;
      const g = el("g", {
        class: `edge ${e.health} ${e.kind}`, "data-source": e.source, "data-target": e.target,
        "data-rps": e.rps ?? "", "data-errors": e.error_ratio ?? "", "data-p99": e.p99_ms ?? "", "data-ejections": e.ejections ?? "",
        "data-health": e.health,
      });
      g.appendChild(el("line", { x1: a.x + BOX_W / 2, y1: a.y, x2: b.x - BOX_W / 2, y2: b.y }));
      if (e.kind !== "store") {
        const label = [`${num(e.rps)}/s`];
        if (e.error_ratio) label.push(`err ${pct(e.error_ratio)}`);
        if (e.rps && e.p99_ms !== null && e.p99_ms !== undefined && e.kind !== "event") label.push(`p99 ${ms(e.p99_ms)}`);
        if (e.ejected_now) label.push(`ejected ${e.ejected_now}`);
        if (e.retries_per_s) label.push(`retry ${num(e.retries_per_s)}/s`);
        const mx = (a.x + BOX_W / 2 + b.x - BOX_W / 2) / 2, my = (a.y + b.y) / 2 - 4;
        g.appendChild(el("text", { x: mx, y: my, "text-anchor": "middle" }, label.join(" · ")));
      }
      g.appendChild(el("title", {}, `${e.source} → ${e.target}: ${e.note || e.kind}`));
      edges.appendChild(g);
    }
    for (const n of view.nodes) {
      const p = at[n.name];
      if (!p) continue;
      const g = el("g", { class: `node ${n.health}`, "data-node": n.name, "data-health": n.health, tabindex: 0 });
      g.appendChild(el("rect", { x: p.x - BOX_W / 2, y: p.y - BOX_H / 2, width: BOX_W, height: BOX_H }));
      g.appendChild(el("text", { x: p.x, y: p.y - 8, class: "name" }, n.name));
      const line = [];
      if (n.instances !== null && n.instances !== undefined) line.push(`${n.healthy_instances ?? "?"}/${n.instances} up`);
      if (n.restarts) line.push(`${n.restarts} restart${n.restarts > 1 ? "s" : ""}`);
      if (n.rps) line.push(`${num(n.rps)}/s`);
      g.appendChild(el("text", { x: p.x, y: p.y + 8 }, line.join(" · ")));
      if (n.error_ratio) g.appendChild(el("text", { x: p.x, y: p.y + 21 }, `errors ${pct(n.error_ratio)}`));
      g.appendChild(el("title", {}, `${n.name}: ${n.health}${n.note ? ` (${n.note})` : ""}`));
      nodes.appendChild(g);
    }
    svg.replaceChildren(edges, nodes);
  }

  function drawTables(view) {
    fill("edges", view.edges.filter((e) => e.kind !== "store").map((e) => {
      const row = document.createElement("tr");
      row.className = e.health;
      row.dataset.edge = `${e.source}>${e.target}`;
      cell(row, e.source); cell(row, e.target, "text"); cell(row, num(e.rps, 2)); cell(row, pct(e.error_ratio));
      cell(row, ms(e.p99_ms)); cell(row, num(e.retries_per_s, 2));
      cell(row, e.ejections === null ? "–" : `${e.ejections} (${e.ejected_now ?? 0})`);
      cell(row, e.breaker_trips === null ? "–" : String(e.breaker_trips));
      return row;
    }));
    fill("streams", view.streams.map((s) => {
      const row = document.createElement("tr");
      cell(row, s.name); cell(row, String(s.messages)); cell(row, String(s.consumers));
      return row;
    }));
    fill("outboxes", view.outboxes.map((o) => {
      const row = document.createElement("tr");
      if (o.oldest_age_s > 60) row.className = "failure";
      cell(row, o.service); cell(row, o.outbox, "text"); cell(row, String(o.backlog));
      cell(row, `${num(o.oldest_age_s)} s`); cell(row, num(o.published_per_s, 2));
      return row;
    }));
    fill("consumers", view.consumers.map((c) => {
      const row = document.createElement("tr");
      if (c.pending + c.ack_pending > 100) row.className = "degraded";
      cell(row, c.name); cell(row, c.service || "?", "text"); cell(row, c.stream, "text");
      cell(row, String(c.pending)); cell(row, String(c.ack_pending)); cell(row, String(c.redelivered));
      cell(row, num(c.handled_per_s, 2)); cell(row, c.dead_lettered === null ? "–" : String(c.dead_lettered));
      return row;
    }));
    const dead = $("dead-letters");
    dead.textContent = view.dead_letters === null ? "Dead letters: unknown (JetStream does not answer)"
      : `Dead letters: ${view.dead_letters} event${view.dead_letters === 1 ? "" : "s"} parked in CINEMA_DEAD_LETTER`;
    dead.className = `dead${view.dead_letters ? " some" : ""}`;
  }

  function drawCost(view) {
    const c = view.cost || {};
    const sources = c.sources_read ?? 0;
    $("cost").textContent =
      `One sampler in the web service reads ${sources} sources every ${num(c.interval_s, 0)} s for every open mesh page ` +
      `(and nothing while none is open): last round ${ms(c.round_ms)}, ${ms(c.cpu_ms_per_round)} CPU a round on average ` +
      `(${num((c.cpu_share || 0) * 100, 2)} % of a core since the web service started; ${c.rounds} rounds). ` +
      `This page: ${state.fetches} requests, ${(state.bytes / 1024).toFixed(0)} KiB so far.`;
    const problems = Object.entries(view.errors || {}).map(([k, v]) => `${k}: ${v}`);
    const when = new Date(view.sampled_at_unix * 1000).toLocaleTimeString();
    $("status").textContent = problems.length ? `Sampled ${when}; not answering: ${problems.join("; ")}` : `Live · sampled ${when}`;
  }

  async function call(path) {
    const reply = await fetch(path, { headers: { Authorization: `Bearer ${state.token}`, Accept: "application/json" }, cache: "no-store" });
    const text = await reply.text();
    state.fetches += 1;
    state.bytes += text.length;
    let data = null;
    try { data = JSON.parse(text); } catch { data = null; }
    if (reply.status === 401 || reply.status === 403) {
      showSignIn(reply.status === 403 ? "This account is not a manager's." : "Please sign in again.");
      return null;
    }
    if (!reply.ok) throw new Error((data && data.error) || `HTTP ${reply.status}`);
    return data;
  }

  async function refresh() {
    clearTimeout(state.timer);
    try {
      const view = await call("/mesh/state");
      if (!view) return;
      state.interval = Math.max(1000, (view.cost && view.cost.interval_s ? view.cost.interval_s : 3) * 1000);
      drawGraph(view);
      drawTables(view);
      drawCost(view);
    } catch (error) {
      $("status").textContent = `Not live: ${error.message}`;
    }
    state.timer = setTimeout(refresh, state.interval);
  }

  // --- the trace ---------------------------------------------------------------------------------

  async function showTrace(reservation) {
    const box = $("waterfall");
    $("trace-message").textContent = "Looking for its trace…";
    box.replaceChildren();
    try {
      const data = await call(`/mesh/trace?reservation=${encodeURIComponent(reservation)}`);
      if (!data) return;
      const end = Math.max(...data.spans.map((s) => s.start_ms + s.duration_ms), 1);
      const services = new Set(data.spans.map((s) => s.service));
      $("trace-message").textContent =
        `Trace ${data.trace_id}: ${data.spans.length} spans over ${[...services].join(", ")}, ${end.toFixed(1)} ms`;
      for (const s of data.spans) {
        const row = document.createElement("div");
        row.className = `span-row${s.error ? " error" : ""}`;
        row.dataset.service = s.service;
        row.dataset.depth = s.depth;
        const label = document.createElement("div");
        label.className = "span-label";
        label.style.paddingLeft = `${s.depth * 0.9}rem`;
        const svc = document.createElement("span");
        svc.className = "svc";
        svc.textContent = s.service;
        label.append(svc, document.createTextNode(s.name + (s.kind ? ` [${s.kind}]` : "")));
        label.title = `${s.service}: ${s.name}`;
        const track = document.createElement("div");
        track.className = "span-track";
        const bar = document.createElement("div");
        bar.className = "span-bar";
        bar.style.left = `${(s.start_ms / end) * 100}%`;
        bar.style.width = `${Math.max((s.duration_ms / end) * 100, 0.2)}%`;
        track.appendChild(bar);
        const dur = document.createElement("div");
        dur.className = "span-ms";
        dur.textContent = ms(s.duration_ms);
        row.append(label, track, dur);
        box.appendChild(row);
      }
    } catch (error) {
      $("trace-message").textContent = error.message;
    }
  }

  async function recent() {
    try {
      const data = await call("/mesh/recent");
      if (!data) return;
      $("recent").replaceChildren(...data.reservations.map((id) => {
        const item = document.createElement("li");
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = id;
        button.addEventListener("click", () => { $("reservation").value = id; showTrace(id); });
        item.appendChild(button);
        return item;
      }));
      if (!data.reservations.length) $("trace-message").textContent = "No reservation has a recorded trace yet.";
    } catch (error) {
      $("trace-message").textContent = error.message;
    }
  }

  // --- signing in --------------------------------------------------------------------------------

  function showSignIn(why) {
    clearTimeout(state.timer);
    state.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    $("mesh").hidden = true;
    $("signin-box").hidden = false;
    $("signin-message").textContent = why || "";
    $("status").textContent = "Signed out";
  }

  function start() {
    $("signin-box").hidden = true;
    $("mesh").hidden = false;
    refresh();
    recent();
  }

  $("signin").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    const reply = await fetch("/oauth2/token", {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded", Accept: "application/json" },
      body: new URLSearchParams({ grant_type: "password", username: form.username.value, password: form.password.value }),
      cache: "no-store",
    }).catch(() => null);
    const data = reply ? await reply.json().catch(() => ({})) : {};
    if (!reply || !reply.ok || !data.access_token) {
      $("signin-message").textContent = "Wrong username or password, or signing in is not possible right now.";
      return;
    }
    state.token = data.access_token;
    sessionStorage.setItem(TOKEN_KEY, state.token);
    form.reset();
    start();
  });
  $("trace-form").addEventListener("submit", (event) => {
    event.preventDefault();
    showTrace($("reservation").value.trim());
  });
  $("recent-refresh").addEventListener("click", recent);

  if (state.token) start(); else showSignIn("");
})();
