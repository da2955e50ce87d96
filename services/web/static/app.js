// The Cinema page: the board (public), seats and payment (customers), the catalog (managers).
// Every API call goes to the REST API on this same origin (the ingress); a signed-in user's
// token (OAuth2 password grant) lives in sessionStorage and rides on every call. Live updates
// come from this page's own address as Server-Sent Events (EventSource on "/").
"use strict";
(() => {
  const TOKEN_KEY = "cinema.token";
  const MAX_SEATS = 10; // CreateReservation takes one to ten seats
  const PAGE_SIZE = 24; // movies per page of the board ("Show more movies" fetches the next)
  const $ = (id) => document.getElementById(id);
  const state = {
    token: null,
    claims: null,
    movies: new Map(), // movie id -> board movie (the pages loaded so far)
    day: "", // the day picked (YYYY-MM-DD in the cinema's time zone), "" for every day
    nextToken: "", // the board's next page, "" when everything is loaded
    screeningMovie: new Map(), // screening id -> movie id
    booking: null, // the open seat map: {screeningId, movieId, title, startTime, hall, price, seatMap, taken, chosen, requestId}
    mine: [],
    logoutTimer: null,
  };

  // --- small helpers ---------------------------------------------------------------------------

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

  function uuid4() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16)); // also outside secure contexts
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
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

  function humanState(value) {
    const name = String(value || "").replace(/^RESERVATION_STATE_/, "").toLowerCase();
    return name ? name[0].toUpperCase() + name.slice(1) : "";
  }

  function say(text, ok = false) {
    const box = $("message");
    box.textContent = text;
    box.classList.toggle("ok", ok);
    box.hidden = !text;
  }

  function debounce(fn, ms) {
    const timers = new Map();
    return (key, ...args) => {
      clearTimeout(timers.get(key));
      timers.set(key, setTimeout(() => { timers.delete(key); fn(key, ...args); }, ms));
    };
  }

  // --- the API -------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
    get retryable() { return this.status === 0 || this.status === 503 || this.status === 504 || this.code === 14; }
  }

  async function api(method, path, body, { auth = true } = {}) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const token = auth ? state.token : null;
    if (token) headers.Authorization = `Bearer ${token}`;
    let reply;
    try {
      // A read revalidates what the browser holds (public reads carry an ETag: an unchanged answer
      // comes back as 304 without its body); nothing else is kept.
      reply = await fetch(path, {
        method, headers, cache: method === "GET" ? "no-cache" : "no-store",
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch {
      throw new ApiError(0, 14, "The cinema cannot be reached right now; try again in a moment.");
    }
    const text = await reply.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch { data = null; }
    if (reply.ok) return data;
    if (reply.status === 401 && token) {
      signOut("Your session has ended: please sign in again.");
      if (method === "GET") return api(method, path, body, { auth: false }); // a public read still works
    }
    const message = (data && (data.message || data.error_description)) || text.trim() || reply.statusText;
    throw new ApiError(reply.status, data && data.code, message);
  }

  // --- signing in ------------------------------------------------------------------------------

  function claimsOf(token) {
    try {
      const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      const bytes = Uint8Array.from(atob(part + "===".slice((part.length + 3) % 4)), (c) => c.charCodeAt(0));
      return JSON.parse(new TextDecoder().decode(bytes));
    } catch {
      return null;
    }
  }

  function hasRole(role) { return !!(state.claims && (state.claims.roles || []).includes(role)); }

  function adopt(token) {
    const claims = claimsOf(token);
    if (!claims || !claims.exp || claims.exp * 1000 <= Date.now() + 5000) return false;
    state.token = token;
    state.claims = claims;
    sessionStorage.setItem(TOKEN_KEY, token);
    clearTimeout(state.logoutTimer);
    state.logoutTimer = setTimeout(() => signOut("Your session has ended: please sign in again."), claims.exp * 1000 - Date.now());
    return true;
  }

  function signOut(why) {
    state.token = null;
    state.claims = null;
    state.mine = [];
    sessionStorage.removeItem(TOKEN_KEY);
    clearTimeout(state.logoutTimer);
    closeBooking();
    renderAccount();
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
        say(reply.status === 429 ? "Too many attempts: wait a few minutes and try again." :
          reply.status >= 500 ? "Signing in is not possible right now; try again in a moment." :
          "Wrong username or password.");
        form.password.select();
        return;
      }
      form.reset();
      say("");
      renderAccount();
      $("signout").focus();
    } catch {
      say("The cinema cannot be reached right now; try again in a moment.");
    } finally {
      button.disabled = false;
    }
  }

  function renderAccount() {
    const signedIn = !!state.token;
    $("signin").hidden = signedIn;
    $("whoami").hidden = !signedIn;
    if (signedIn) {
      $("who").textContent = state.claims.preferred_username || state.claims.sub;
      $("roles").textContent = `(${(state.claims.roles || []).join(", ")})`;
    }
    $("mine").hidden = !hasRole("customer");
    $("manage").hidden = !hasRole("manager");
    if (hasRole("customer")) loadMine();
    if (hasRole("manager")) loadCatalog();
    renderBoard();
  }

  // --- the board ------------------------------------------------------------------------------

  let boardAsked = 0;

  // The board comes in pages (by title) of the day picked: GET /v1/board?pageSize&showingOn&pageToken.
  function boardPath(extra = {}) {
    const query = new URLSearchParams({ pageSize: String(PAGE_SIZE), ...extra });
    if (state.day) query.set("showingOn", state.day);
    return `/v1/board?${query}`;
  }

  async function loadBoard() {
    const asked = ++boardAsked;
    try {
      const board = await api("GET", boardPath());
      if (asked !== boardAsked) return; // a newer answer is on its way
      state.movies = new Map((board.movies || []).map((m) => [m.movieId, m]));
      state.nextToken = board.nextPageToken || "";
      renderDays(board.days || []);
      renderBoard();
    } catch (error) {
      say(`The board could not be loaded: ${error.message}`);
    }
  }

  async function loadMore() {
    const asked = boardAsked;
    const button = $("more");
    button.disabled = true;
    try {
      const board = await api("GET", boardPath({ pageToken: state.nextToken }));
      if (asked !== boardAsked) return; // the day changed meanwhile
      for (const movie of board.movies || []) state.movies.set(movie.movieId, movie);
      state.nextToken = board.nextPageToken || "";
      renderBoard();
    } catch (error) {
      say(`More movies could not be loaded: ${error.message}`);
    } finally {
      button.disabled = false;
    }
  }

  function dayLabel(day) {
    // A date of the cinema's calendar: shown as that date, whatever the browser's time zone.
    return new Date(`${day}T12:00:00Z`).toLocaleDateString(undefined, {
      timeZone: "UTC", weekday: "short", day: "numeric", month: "short",
    });
  }

  function renderDays(days) {
    const select = $("day");
    const offered = state.day && !days.includes(state.day) ? [state.day, ...days] : days;
    select.replaceChildren(el("option", { value: "", text: "All days" }),
      ...offered.map((day) => el("option", { value: day, text: dayLabel(day) })));
    select.value = state.day;
  }

  function lastLoadedTitle() {
    let last = "";
    for (const movie of state.movies.values()) if (movie.title.localeCompare(last) > 0) last = movie.title;
    return last;
  }

  async function refreshMovie(movieId) {
    // The movie as the board shows it now (that day's screenings when a day is picked).
    const reply = await api("GET", boardPath({ movieId }));
    const movie = (reply.movies || [])[0];
    const known = state.movies.has(movieId);
    if (!movie) {
      if (known) { state.movies.delete(movieId); renderBoard(); }
      return;
    }
    // A movie new to this page joins it only within the pages loaded; "Show more" brings the rest.
    if (!known && state.nextToken && movie.title.localeCompare(lastLoadedTitle()) > 0) return;
    const before = state.movies.get(movieId);
    state.movies.set(movieId, movie);
    if (!known) { renderBoard(); return; }
    replaceMovie(movie, before);
  }

  function movieCard(movie, before) {
    const id = movie.movieId;
    const previous = new Map(((before && before.screenings) || []).map((s) => [s.screeningId, s.freeSeats || 0]));
    const count = movie.reviewCount || 0;
    const rating = count ? el("span", { class: "rating", text: `★ ${Number(movie.averageRating || 0).toFixed(1)}` }) : null;
    const meta = el("p", { class: "meta" },
      [(movie.genres || []).join(", "), movie.durationMinutes ? `${movie.durationMinutes} min` : ""].filter(Boolean).join(" · "),
      " · ", rating, rating ? " " : "", `${count} review${count === 1 ? "" : "s"}`);
    const rows = (movie.screenings || []).map((s) => {
      state.screeningMovie.set(s.screeningId, id);
      const free = s.freeSeats || 0;
      const changed = previous.has(s.screeningId) && previous.get(s.screeningId) !== free;
      const label = `Choose seats for ${movie.title}, ${when(s.startTime)}, hall ${s.hall}`;
      const button = el("button", { type: "button", class: "secondary", "aria-label": label, text: "Seats", dataset: { screeningId: s.screeningId } });
      button.addEventListener("click", () => openBooking(s.screeningId));
      return el("tr", { class: changed ? "flash" : null, dataset: { screeningId: s.screeningId } },
        el("td", { text: when(s.startTime) }),
        el("td", { text: s.hall }),
        el("td", { text: money(s.price) }),
        el("td", { class: "free", dataset: { free }, text: `${free} of ${s.totalSeats || 0}` }),
        el("td", {}, button));
    });
    const table = el("table", {},
      el("caption", { class: "sr-only", text: `Screenings of ${movie.title}` }),
      el("thead", {}, el("tr", {}, ...["Starts", "Hall", "Price", "Free seats"].map((h) => el("th", { scope: "col", text: h })),
        el("th", { scope: "col" }, el("span", { class: "sr-only", text: "Book" })))),
      el("tbody", {}, ...rows));
    return el("article", { class: "movie", id: `movie-${id}`, "aria-labelledby": `title-${id}`, dataset: { movieId: id } },
      el("h3", { id: `title-${id}`, text: movie.title }), meta, table);
  }

  function renderBoard() {
    const list = $("movies");
    const movies = [...state.movies.values()].filter((m) => (m.screenings || []).length);
    movies.sort((a, b) => a.title.localeCompare(b.title));
    list.replaceChildren(...movies.map((m) => movieCard(m)));
    $("board-empty").textContent = state.day ? "Nothing is scheduled on that day." : "Nothing is scheduled yet.";
    $("board-empty").hidden = movies.length > 0;
    $("more").hidden = !state.nextToken;
  }

  function replaceMovie(movie, before) {
    const old = document.getElementById(`movie-${movie.movieId}`);
    if (!old || !(movie.screenings || []).length) { renderBoard(); return; }
    // keep the keyboard focus on the same screening's button across the update
    const focused = document.activeElement && old.contains(document.activeElement) ? document.activeElement.dataset.screeningId : null;
    const card = movieCard(movie, before);
    old.replaceWith(card);
    if (focused) { const again = card.querySelector(`button[data-screening-id="${focused}"]`); if (again) again.focus(); }
  }

  // --- live updates ------------------------------------------------------------------------------

  const refetchMovie = debounce((movieId) => refreshMovie(movieId).catch(() => loadBoard()), 150);
  const refetchMine = debounce(() => loadMine(), 400);
  let source = null;
  let reloadOnOpen = false;

  function setLive(text, on) {
    $("live").textContent = text;
    $("live").classList.toggle("on", on);
  }

  function connectLive() {
    source = new EventSource("/");
    source.addEventListener("open", () => {
      setLive("Live", true);
      if (reloadOnOpen) { reloadOnOpen = false; loadBoard(); }
    });
    source.addEventListener("change", (event) => {
      let change;
      try { change = JSON.parse(event.data); } catch { return; }
      onChange(change.movie_id || "", change.screening_id || "");
    });
    source.addEventListener("resync", () => {
      loadBoard();
      if (state.booking) refreshAvailability();
      if (hasRole("customer")) refetchMine("mine");
    });
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED) {
        // refused (e.g. 503): the browser gives up, we come back later and catch up then
        setLive("Offline: updates paused", false);
        source.close();
        reloadOnOpen = true;
        setTimeout(connectLive, 5000);
      } else {
        setLive("Reconnecting…", false);
      }
    });
  }

  function onChange(movieId, screeningId) {
    const movie = movieId || state.screeningMovie.get(screeningId);
    // refreshMovie decides whether the movie belongs on the pages loaded; a change that names no
    // movie and a screening this page does not show (a failed reservation) changes nothing here.
    if (movie) refetchMovie(movie);
    if (state.booking && screeningId === state.booking.screeningId) refreshAvailability();
    if (screeningId && hasRole("customer")) refetchMine("mine");
  }

  // --- seats and payment ------------------------------------------------------------------------

  async function openBooking(screeningId) {
    if (!hasRole("customer")) {
      say("Sign in as a customer to reserve seats.");
      $("username").focus();
      return;
    }
    const movieId = state.screeningMovie.get(screeningId);
    const movie = state.movies.get(movieId);
    const screening = movie && movie.screenings.find((s) => s.screeningId === screeningId);
    state.booking = {
      screeningId, movieId, title: movie ? movie.title : "", startTime: screening && screening.startTime,
      hall: screening && screening.hall, price: screening && screening.price,
      seatMap: null, taken: new Set(), chosen: new Set(), requestId: null,
    };
    $("booking-what").textContent = `${state.booking.title}, ${when(state.booking.startTime)}, hall ${state.booking.hall}`;
    $("booking").hidden = false;
    await refreshAvailability();
    const first = $("seatmap").querySelector("button:not(:disabled)");
    $("booking").scrollIntoView({ block: "start" });
    if (first) first.focus();
  }

  function closeBooking() {
    state.booking = null;
    $("booking").hidden = true;
    $("seatmap").replaceChildren();
  }

  async function refreshAvailability() {
    const booking = state.booking;
    if (!booking) return;
    try {
      const reply = await api("GET", `/v1/screenings/${encodeURIComponent(booking.screeningId)}/availability`);
      if (state.booking !== booking) return;
      booking.seatMap = reply.seatMap || { rows: 0, seatsPerRow: 0 };
      booking.taken = new Set(reply.takenSeats || []);
      booking.price = reply.price || booking.price;
      const lost = [...booking.chosen].filter((seat) => booking.taken.has(seat));
      if (lost.length) {
        lost.forEach((seat) => booking.chosen.delete(seat));
        say(`Someone else just took ${lost.join(", ")}: please choose again.`);
      }
      renderSeats();
    } catch (error) {
      say(`The seats could not be loaded: ${error.message}`);
    }
  }

  function renderSeats() {
    const booking = state.booking;
    const map = booking.seatMap;
    const blocked = new Set(map.blockedSeats || []);
    const rows = [];
    for (let r = 0; r < (map.rows || 0); r++) {
      const row = String.fromCharCode(65 + r);
      const seats = [];
      for (let n = 1; n <= (map.seatsPerRow || 0); n++) {
        const seat = `${row}${n}`;
        const taken = booking.taken.has(seat);
        const unsold = blocked.has(seat);
        const chosen = booking.chosen.has(seat);
        const button = el("button", {
          type: "button", class: "seat", text: String(n), dataset: { seat },
          "aria-label": `Seat ${seat}${taken ? ", taken" : unsold ? ", not for sale" : ""}`,
          "aria-pressed": taken || unsold ? null : String(chosen), disabled: taken || unsold,
        });
        button.addEventListener("click", () => toggleSeat(seat));
        seats.push(button);
      }
      rows.push(el("div", { class: "row", role: "group", "aria-label": `Row ${row}` },
        el("span", { class: "row-name", "aria-hidden": "true", text: row }), ...seats));
    }
    const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.seat : null;
    $("seatmap").replaceChildren(...rows);
    if (focused) { const again = $("seatmap").querySelector(`[data-seat="${focused}"]`); if (again && !again.disabled) again.focus(); }
    renderChosen();
  }

  function toggleSeat(seat) {
    const booking = state.booking;
    if (booking.chosen.has(seat)) booking.chosen.delete(seat);
    else if (booking.chosen.size >= MAX_SEATS) { say(`At most ${MAX_SEATS} seats per reservation.`); return; }
    else booking.chosen.add(seat);
    booking.requestId = null; // another choice is another request
    const button = $("seatmap").querySelector(`[data-seat="${seat}"]`);
    if (button) button.setAttribute("aria-pressed", String(booking.chosen.has(seat)));
    renderChosen();
  }

  function renderChosen() {
    const booking = state.booking;
    const seats = [...booking.chosen].sort();
    const total = booking.price ? { ...booking.price, minorUnits: Number(booking.price.minorUnits || 0) * seats.length } : null;
    $("chosen").textContent = seats.length ? `Chosen: ${seats.join(", ")}; total ${money(total)}.` : "No seats chosen.";
    $("pay-button").disabled = !seats.length;
  }

  async function pay(event) {
    event.preventDefault();
    const booking = state.booking;
    const form = event.target;
    if (!booking || !booking.chosen.size) return;
    booking.requestId = booking.requestId || uuid4(); // a retry after a timeout books once
    const button = $("pay-button");
    button.disabled = true;
    try {
      const reply = await api("POST", "/v1/reservations", {
        screeningId: booking.screeningId,
        seats: [...booking.chosen].sort(),
        requestId: booking.requestId,
        card: {
          number: form.number.value.replace(/\s+/g, ""),
          expiryMonth: Number(form.month.value),
          expiryYear: Number(form.year.value),
          cvc: form.cvc.value.trim(),
        },
      });
      const r = reply.reservation;
      form.number.value = "";
      form.cvc.value = "";
      closeBooking();
      say(`Reserved ${r.seats.join(", ")} for ${r.movieTitle || booking.title}, ${when(r.startTime)}, hall ${r.hall}: ${humanState(r.state).toLowerCase()}, ${money(r.amount)} paid.`, true);
      await loadMine();
    } catch (error) {
      if (!error.retryable) booking.requestId = null;
      say(error.retryable ? `${error.message} (your seats are not charged twice if you try again)` : error.message);
      if (error.code === 9 || error.status === 409) refreshAvailability();
    } finally {
      if (state.booking) renderChosen();
    }
  }

  // --- my reservations ----------------------------------------------------------------------------

  let mineAsked = 0;

  async function loadMine() {
    if (!hasRole("customer")) return;
    const asked = ++mineAsked;
    try {
      const reply = await api("GET", "/v1/reservations?page_size=50");
      if (asked !== mineAsked || !hasRole("customer")) return; // a newer answer is on its way
      state.mine = (reply && reply.reservations) || [];
      renderMine();
    } catch (error) {
      if (state.token) say(`Your reservations could not be loaded: ${error.message}`);
    }
  }

  function renderMine() {
    const rows = state.mine.map((r) => {
      const cancellable = r.state === "RESERVATION_STATE_CONFIRMED" || r.state === "RESERVATION_STATE_PENDING";
      let action = null;
      if (cancellable) {
        action = el("button", { type: "button", class: "secondary", text: "Cancel",
          "aria-label": `Cancel reservation of ${r.movieTitle}, seats ${r.seats.join(" ")}` });
        action.addEventListener("click", () => cancel(r, action));
      }
      return el("tr", { dataset: { reservationId: r.id } },
        el("td", { text: r.movieTitle }),
        el("td", { text: when(r.startTime) }),
        el("td", { text: r.hall }),
        el("td", { class: "seats", text: (r.seats || []).join(", ") }),
        el("td", { text: money(r.amount) }),
        el("td", { class: "state", text: humanState(r.state) }),
        el("td", {}, action));
    });
    $("mine-table").querySelector("tbody").replaceChildren(...rows);
    $("mine-table").hidden = !rows.length;
    $("mine-empty").hidden = rows.length > 0;
  }

  async function cancel(reservation, button) {
    button.disabled = true;
    try {
      await api("POST", `/v1/reservations/${encodeURIComponent(reservation.id)}:cancel`, { reason: "cancelled on the web" });
      say(`Cancelled your reservation of ${reservation.seats.join(", ")} for ${reservation.movieTitle}; the refund follows.`, true);
      await loadMine();
    } catch (error) {
      say(error.message);
      button.disabled = false;
    }
  }

  // --- the catalog (managers) -------------------------------------------------------------------

  let catalogAsked = 0;

  async function loadCatalog(prefer) {
    const asked = ++catalogAsked;
    try {
      const reply = await api("GET", "/v1/movies?page_size=100");
      if (asked !== catalogAsked) return; // a newer answer is on its way
      const select = $("screening-movie");
      const chosen = prefer || select.value;
      select.replaceChildren(...((reply && reply.movies) || []).map((m) => el("option", { value: m.id, text: m.title })));
      if (chosen) select.value = chosen;
    } catch (error) {
      say(`The catalog could not be loaded: ${error.message}`);
    }
  }

  async function registerMovie(event) {
    event.preventDefault();
    const form = event.target;
    const genres = form.genres.value.split(",").map((g) => g.trim().toLowerCase()).filter(Boolean);
    try {
      const reply = await api("POST", `/v1/movies?request_id=${uuid4()}`, {
        title: form.title.value.trim(),
        durationMinutes: Number(form.minutes.value),
        genres,
        description: form.description.value.trim(),
      });
      form.reset();
      say(`Registered "${reply.movie.title}". Schedule a screening to put it on the board.`, true);
      await loadCatalog(reply.movie.id);
      $("screening-hall").focus();
    } catch (error) {
      say(error.message);
    }
  }

  async function scheduleScreening(event) {
    event.preventDefault();
    const form = event.target;
    const start = new Date(form.start.value);
    if (Number.isNaN(start.getTime())) { say("Give the start as a date and time."); return; }
    const minor = Math.round(parseFloat(form.price.value.replace(",", ".")) * 100);
    try {
      const reply = await api("POST", `/v1/movies/${encodeURIComponent(form.movie.value)}/screenings?request_id=${uuid4()}`, {
        hall: form.hall.value.trim(),
        startTime: start.toISOString(),
        seatMap: { rows: Number(form.rows.value), seatsPerRow: Number(form.seats.value) },
        price: { minorUnits: String(minor), currencyCode: form.currency.value.trim().toUpperCase() },
      });
      const s = reply.screening;
      say(`Scheduled ${s.movieTitle} in hall ${s.hall}, ${when(s.startTime)}.`, true);
      form.hall.value = "";
      form.start.value = "";
    } catch (error) {
      say(error.message);
    }
  }

  // --- start ------------------------------------------------------------------------------------

  $("signin").addEventListener("submit", signIn);
  $("signout").addEventListener("click", () => { signOut(); say(""); $("username").focus(); });
  $("pay").addEventListener("submit", pay);
  $("booking-close").addEventListener("click", closeBooking);
  $("movie-form").addEventListener("submit", registerMovie);
  $("screening-form").addEventListener("submit", scheduleScreening);
  $("day").addEventListener("change", (event) => { state.day = event.target.value; loadBoard(); });
  $("board-filter").addEventListener("submit", (event) => event.preventDefault());
  $("more").addEventListener("click", loadMore);
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved && !adopt(saved)) sessionStorage.removeItem(TOKEN_KEY);
  renderAccount();
  connectLive();
  loadBoard();
})();
