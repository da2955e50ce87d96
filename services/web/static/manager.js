// The manager's page: sales per screening and per movie (a table and a chart of sales over
// time), and who booked each screening. Reads only the REST API on this origin (the ingress):
// GET /v1/movies (public), GET /v1/sales/movies/{id} and GET /v1/screenings/{id}/reservations
// (managers). The token is the one the board page keeps in sessionStorage, or a new sign-in here.
"use strict";
(() => {
  const TOKEN_KEY = "cinema.token";
  const SVG = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);
  const state = { token: null, claims: null, movieId: "", screening: null, nextToken: "" };

  function el(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "text") node.textContent = value;
      else if (name === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }

  function svg(tag, attributes = {}, text = null) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
    if (text !== null) node.textContent = text;
    return node;
  }

  function money(price) {
    if (!price) return "";
    const minor = Number(price.minorUnits || 0); // int64 arrives as a JSON string
    const currency = price.currencyCode || "EUR";
    try {
      return new Intl.NumberFormat(undefined, { style: "currency", currency }).format(minor / 100);
    } catch {
      return `${(minor / 100).toFixed(2)} ${currency}`;
    }
  }

  function when(timestamp) {
    if (!timestamp) return "";
    return new Date(timestamp).toLocaleString(undefined, {
      weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit",
    });
  }

  function say(text, ok = false) {
    const box = $("message");
    box.textContent = text;
    box.hidden = !text;
    box.classList.toggle("ok", ok);
  }

  // --- the API ---------------------------------------------------------------------------------

  async function api(path, { auth = true } = {}) {
    const headers = { Accept: "application/json" };
    if (auth && state.token) headers.Authorization = `Bearer ${state.token}`;
    let reply;
    try {
      reply = await fetch(path, { headers, cache: "no-store" });
    } catch {
      throw new Error("The cinema cannot be reached right now; try again in a moment.");
    }
    const data = await reply.json().catch(() => null);
    if (reply.ok) return data;
    if (reply.status === 401 && auth) signOut("Your session has ended: please sign in again.");
    if (reply.status === 403) throw new Error("Only a manager may see this.");
    throw new Error((data && data.message) || `The cinema answered ${reply.status}.`);
  }

  // --- signing in ------------------------------------------------------------------------------

  function claimsOf(token) {
    try {
      const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      const claims = JSON.parse(atob(part + "=".repeat((4 - (part.length % 4)) % 4)));
      return claims && claims.exp * 1000 > Date.now() ? claims : null;
    } catch {
      return null;
    }
  }

  function adopt(token) {
    const claims = claimsOf(token);
    if (!claims) return false;
    state.token = token;
    state.claims = claims;
    sessionStorage.setItem(TOKEN_KEY, token);
    return true;
  }

  function isManager() { return !!(state.claims && (state.claims.roles || []).includes("manager")); }

  function signOut(why) {
    state.token = null;
    state.claims = null;
    sessionStorage.removeItem(TOKEN_KEY);
    render();
    if (why) say(why);
  }

  async function signIn(event) {
    event.preventDefault();
    const form = event.target;
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      const reply = await fetch("/oauth2/token", {
        method: "POST",
        headers: { "Content-Type": "application/x-www-form-urlencoded", Accept: "application/json" },
        body: new URLSearchParams({ grant_type: "password", username: form.username.value, password: form.password.value }),
        cache: "no-store",
      });
      const data = await reply.json().catch(() => ({}));
      if (!reply.ok || !data.access_token || !adopt(data.access_token)) {
        say(reply.status === 429 ? "Too many attempts: wait a few minutes and try again." : "Wrong username or password.");
        form.password.select();
        return;
      }
      form.reset();
      say("");
      render();
    } catch {
      say("The cinema cannot be reached right now; try again in a moment.");
    } finally {
      button.disabled = false;
    }
  }

  function render() {
    const signedIn = !!state.token;
    $("signin").hidden = signedIn;
    $("whoami").hidden = !signedIn;
    if (signedIn) {
      $("who").textContent = state.claims.preferred_username || state.claims.sub;
      $("roles").textContent = `(${(state.claims.roles || []).join(", ")})`;
    }
    const manager = isManager();
    $("not-manager").hidden = manager;
    $("sales").hidden = !manager;
    if (!manager) $("bookings").hidden = true;
    if (manager && $("movie").options.length <= 1) loadMovies().catch((error) => say(error.message));
  }

  // --- sales -------------------------------------------------------------------------------------

  async function loadMovies() {
    const select = $("movie");
    let token = "";
    const movies = [];
    do {
      const page = await api(`/v1/movies?page_size=100&page_token=${encodeURIComponent(token)}`, { auth: false });
      movies.push(...((page && page.movies) || []));
      token = (page && page.nextPageToken) || "";
    } while (token);
    movies.sort((a, b) => a.title.localeCompare(b.title));
    for (const movie of movies) select.append(el("option", { value: movie.id, text: movie.title }));
  }

  function salesCells(sales) {
    return [
      sales.seatsSold || 0, sales.seatsFree || 0, sales.seatsBlocked || 0, sales.cancellations || 0,
      money(sales.revenue), money(sales.refunds), money(sales.netRevenue),
    ].map((value) => el("td", { text: String(value) }));
  }

  async function loadSales() {
    const movieId = $("movie").value;
    state.movieId = movieId;
    const table = $("sales-table");
    if (!movieId) {
      table.hidden = true;
      $("chart").replaceChildren();
      $("chart-title").hidden = true;
      return;
    }
    const answer = await api(`/v1/sales/movies/${encodeURIComponent(movieId)}`);
    if (state.movieId !== movieId) return; // another movie was picked meanwhile
    const body = table.querySelector("tbody");
    body.replaceChildren();
    for (const screening of answer.screenings || []) {
      const label = `${when(screening.startTime)} · hall ${screening.hall || ""}${screening.cancelled ? " (cancelled)" : ""}`;
      const button = el("button", { type: "button", class: "secondary", text: "Reservations", dataset: { screening: screening.screeningId } });
      button.addEventListener("click", () => openBookings(screening.screeningId, label));
      body.append(el("tr", { dataset: { screening: screening.screeningId } },
        el("th", { scope: "row", text: label }), ...salesCells(screening.sales || {}), el("td", {}, button)));
    }
    const foot = table.querySelector("tfoot");
    foot.replaceChildren(el("tr", {}, el("td", { text: "Total" }), ...salesCells(answer.sales || {}), el("td")));
    table.hidden = false;
    $("as-of").textContent = answer.asOfTime ? `As of ${when(answer.asOfTime)} (built from the events; it follows within seconds).` : "";
    drawChart((answer.sales && answer.sales.timeline) || [], (answer.sales && answer.sales.revenue) || {});
  }

  // A bar per hour (seats sold), and a line of the net revenue so far (its own scale, on the right).
  function drawChart(points, revenue) {
    const box = $("chart");
    box.replaceChildren();
    $("chart-title").hidden = false;
    if (!points.length) {
      box.append(el("p", { class: "muted", text: "No sales yet." }));
      return;
    }
    const width = 640, height = 220, left = 36, right = 64, top = 12, bottom = 36;
    const plotW = width - left - right, plotH = height - top - bottom;
    const seats = points.map((p) => p.seatsSold || 0);
    let running = 0;
    const net = points.map((p) => (running += Number((p.revenue || {}).minorUnits || 0) - Number((p.refunds || {}).minorUnits || 0)));
    const maxSeats = Math.max(1, ...seats);
    const maxNet = Math.max(1, ...net.map(Math.abs));
    const step = plotW / points.length;
    const total = seats.reduce((a, b) => a + b, 0);
    const chart = svg("svg", {
      viewBox: `0 0 ${width} ${height}`, width, height, role: "img",
      "aria-label": `Sales over time: ${total} seats sold in ${points.length} hour(s); net revenue ${money({ minorUnits: net[net.length - 1], currencyCode: revenue.currencyCode })}.`,
    });
    chart.append(svg("line", { class: "axis", x1: left, y1: top + plotH, x2: left + plotW, y2: top + plotH }));
    chart.append(svg("text", { x: 2, y: top + 10 }, String(maxSeats)));
    chart.append(svg("text", { x: 2, y: top + plotH }, "0"));
    chart.append(svg("text", { x: left + plotW + 4, y: top + 10 }, money({ minorUnits: maxNet, currencyCode: revenue.currencyCode })));
    const line = [];
    points.forEach((point, i) => {
      const h = (seats[i] / maxSeats) * plotH;
      const x = left + i * step;
      const barW = Math.max(1, Math.min(step * 0.7, 48));
      const bar = svg("rect", { class: "bar-sold", x: x + (step - barW) / 2, y: top + plotH - h, width: barW, height: h });
      bar.append(svg("title", {}, `${when(point.startTime)}: ${seats[i]} seat(s)`));
      chart.append(bar);
      line.push([x + step / 2, top + plotH - (Math.max(0, net[i]) / maxNet) * plotH]);
    });
    chart.append(svg("polyline", { class: "line-net", points: line.map((p) => p.join(",")).join(" ") }));
    line.forEach(([cx, cy], i) => {
      const dot = svg("circle", { class: "dot-net", cx, cy, r: 3 });
      dot.append(svg("title", {}, `${when(points[i].startTime)}: net revenue so far ${money({ minorUnits: net[i], currencyCode: revenue.currencyCode })}`));
      chart.append(dot);
    });
    chart.append(svg("text", { x: left, y: height - 8 }, when(points[0].startTime)));
    if (points.length > 1) {
      chart.append(svg("text", { x: left + plotW, y: height - 8, "text-anchor": "end" }, when(points[points.length - 1].startTime)));
    }
    box.append(chart, el("p", { class: "chart-legend" },
      el("span", { text: "Bars: seats sold per hour" }), el("span", { text: "Line: net revenue so far" })));
  }

  // --- who booked --------------------------------------------------------------------------------

  function openBookings(screeningId, label) {
    state.screening = screeningId;
    $("bookings-title").textContent = `Reservations · ${label}`;
    $("bookings").hidden = false;
    loadBookings(false).catch((error) => say(error.message));
  }

  async function loadBookings(more) {
    const screeningId = state.screening;
    if (!screeningId) return;
    const params = new URLSearchParams({ page_size: "50" });
    if ($("state").value) params.set("state", $("state").value);
    if (more && state.nextToken) params.set("page_token", state.nextToken);
    const page = await api(`/v1/screenings/${encodeURIComponent(screeningId)}/reservations?${params}`);
    if (state.screening !== screeningId) return;
    const body = $("bookings-table").querySelector("tbody");
    if (!more) body.replaceChildren();
    for (const r of page.reservations || []) {
      body.append(el("tr", { dataset: { reservation: r.id } },
        el("td", { text: r.customerId || "" }), el("td", { text: (r.seats || []).join(" ") }),
        el("td", { text: money(r.amount) }),
        el("td", { text: (r.state || "").replace("RESERVATION_STATE_", "").toLowerCase() }),
        el("td", { text: when(r.createTime) }), el("td", { text: r.reason || "" })));
    }
    state.nextToken = page.nextPageToken || "";
    $("bookings-more").hidden = !state.nextToken;
    $("bookings-table").hidden = body.children.length === 0;
    $("bookings-empty").hidden = body.children.length !== 0;
  }

  // --- start -------------------------------------------------------------------------------------

  $("signin").addEventListener("submit", signIn);
  $("signout").addEventListener("click", () => signOut(""));
  $("movie").addEventListener("change", () => loadSales().catch((error) => say(error.message)));
  $("refresh").addEventListener("click", () => loadSales().catch((error) => say(error.message)));
  $("state").addEventListener("change", () => loadBookings(false).catch((error) => say(error.message)));
  $("bookings-more").addEventListener("click", () => loadBookings(true).catch((error) => say(error.message)));
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved && !adopt(saved)) sessionStorage.removeItem(TOKEN_KEY);
  render();
})();
