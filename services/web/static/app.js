// The Cinema page: the board (public), seats and payment (customers), the catalog (managers).
// Every API call goes to the REST API on this same origin (the ingress); a signed-in user's
// token (OAuth2 password grant) lives in sessionStorage and rides on every call. Live updates
// come from this page's own address as Server-Sent Events (EventSource on "/").
"use strict";
(() => {
  const TOKEN_KEY = "cinema.token";
  const REFRESH_KEY = "cinema.refresh"; // the refresh token: a new access token before this one ends
  const MAX_SEATS = 10; // CreateReservation takes one to ten seats
  const PAGE_SIZE = 24; // movies per page of the board ("Show more movies" fetches the next)
  const $ = (id) => document.getElementById(id);
  const state = {
    token: null,
    claims: null,
    movies: new Map(), // movie id -> board movie (the pages loaded so far)
    day: null, // the day picked (YYYY-MM-DD in the cinema's time zone), "" for every day, null before the first answer
    days: [], // the days with screenings to come (the board's answer)
    timeZone: "", // the cinema's time zone (the board's answer)
    genre: "", // the genre picked, "" for all
    genres: new Set(), // the genres seen on the board so far (what the genre filter offers)
    search: "", // a title search (lower case), "" for none
    view: {}, // what the address shows: {movieId} or {screeningId} or neither (the board)
    returnTo: null, // the screening whose seat map was open (focus goes back to its chip)
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

  async function api(method, path, body, { auth = true, renewed = false } = {}) {
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
      if (!renewed && token === state.token && (await renew())) return api(method, path, body, { auth, renewed: true });
      if (state.token === token) signOut("Your session has ended: please sign in again.");
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

  function adopt(token, refreshToken) {
    const claims = claimsOf(token);
    if (!claims || !claims.exp || claims.exp * 1000 <= Date.now() + 5000) return false;
    state.token = token;
    state.claims = claims;
    sessionStorage.setItem(TOKEN_KEY, token);
    if (refreshToken) sessionStorage.setItem(REFRESH_KEY, refreshToken);
    clearTimeout(state.logoutTimer);
    const left = claims.exp * 1000 - Date.now();
    // with a refresh token, a new access token a minute before this one ends (no password again)
    state.logoutTimer = sessionStorage.getItem(REFRESH_KEY)
      ? setTimeout(renewOrSignOut, Math.max(1000, left - 60000))
      : setTimeout(() => signOut("Your session has ended: please sign in again."), left);
    return true;
  }

  // The refresh token grant: each use answers with the next refresh token (the one used is spent),
  // so one renewal at a time.
  let renewing = null;
  function renew() {
    const refreshToken = sessionStorage.getItem(REFRESH_KEY);
    if (!refreshToken) return Promise.resolve(false);
    if (!renewing) {
      renewing = (async () => {
        try {
          const reply = await fetch("/oauth2/token", {
            method: "POST",
            headers: { "Content-Type": "application/x-www-form-urlencoded", Accept: "application/json" },
            body: new URLSearchParams({ grant_type: "refresh_token", refresh_token: refreshToken }),
            cache: "no-store",
          });
          const data = await reply.json().catch(() => ({}));
          if (reply.ok && data.access_token && adopt(data.access_token, data.refresh_token)) return true;
          if (reply.status === 400 || reply.status === 401) sessionStorage.removeItem(REFRESH_KEY); // spent or revoked
          return false;
        } catch {
          return false;
        } finally {
          renewing = null;
        }
      })();
    }
    return renewing;
  }

  async function renewOrSignOut() {
    if (await renew()) return;
    if (sessionStorage.getItem(REFRESH_KEY) && state.claims && state.claims.exp * 1000 > Date.now() + 10000) {
      state.logoutTimer = setTimeout(renewOrSignOut, 10000); // identity unreachable: try again while the token lasts
      return;
    }
    signOut("Your session has ended: please sign in again.");
  }

  function signOut(why) {
    const refreshToken = sessionStorage.getItem(REFRESH_KEY);
    if (refreshToken && !why) {
      // signing out on purpose ends the session at identity too (RFC 7009); nothing waits for it
      fetch("/oauth2/revoke", {
        method: "POST",
        headers: { "Content-Type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ token: refreshToken, token_type_hint: "refresh_token" }),
        cache: "no-store",
      }).catch(() => {});
    }
    state.token = null;
    state.claims = null;
    state.mine = [];
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(REFRESH_KEY);
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
      if (!reply.ok || !data.access_token || !adopt(data.access_token, data.refresh_token)) {
        say(reply.status === 429 ? `Too many attempts: try again in ${reply.headers.get("Retry-After") || "a few"} seconds.` :
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

  // A new customer: POST /v1/accounts (identity), then the password grant with the new account.
  async function signUp(event) {
    event.preventDefault();
    const form = event.target;
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      const email = form.email.value.trim();
      const password = form.password.value;
      const { account } = await api("POST", "/v1/accounts", { email, password }, { auth: false });
      const reply = await fetch("/oauth2/token", {
        method: "POST",
        headers: { "Content-Type": "application/x-www-form-urlencoded", Accept: "application/json" },
        body: new URLSearchParams({ grant_type: "password", username: account.username, password }),
        cache: "no-store",
      });
      const data = await reply.json().catch(() => ({}));
      form.reset();
      if (!reply.ok || !data.access_token || !adopt(data.access_token, data.refresh_token)) {
        say("Your account is ready: sign in with your e-mail address and password.", true);
        return;
      }
      $("signup-box").open = false;
      say(`Welcome! Your account ${account.username} is ready and you are signed in.`, true);
      renderAccount();
      $("signout").focus();
    } catch (error) {
      say(error.message); // the service's own words: which field, and why
      form.email.focus();
    } finally {
      button.disabled = false;
    }
  }

  function renderAccount() {
    const signedIn = !!state.token;
    $("signin").hidden = signedIn;
    $("signup-box").hidden = signedIn;
    $("whoami").hidden = !signedIn;
    if (signedIn) {
      $("who").textContent = state.claims.preferred_username || state.claims.sub;
      $("roles").textContent = `(${(state.claims.roles || []).join(", ")})`;
    }
    $("mine").hidden = !hasRole("customer");
    $("manage").hidden = !hasRole("manager");
    if (hasRole("customer")) loadMine();
    if (hasRole("manager")) loadCatalog();
    if (state.booking) renderPayer();
    renderBoard();
  }

  // --- the board ------------------------------------------------------------------------------

  let boardAsked = 0;
  const MAX_SEARCH_PAGES = 20; // a title search loads the remaining pages of the day, this many at most

  // The board comes in pages (by title) of the day picked: GET /v1/board?pageSize&showingOn&genre&pageToken.
  function boardPath(extra = {}) {
    const query = new URLSearchParams({ pageSize: String(PAGE_SIZE), ...extra });
    if (state.day) query.set("showingOn", state.day);
    if (state.genre) query.set("genre", state.genre);
    return `/v1/board?${query}`;
  }

  function learnGenres(movies) {
    let added = false;
    for (const movie of movies) {
      for (const genre of movie.genres || []) {
        if (!state.genres.has(genre)) { state.genres.add(genre); added = true; }
      }
    }
    if (added) renderGenres();
  }

  async function loadBoard() {
    const asked = ++boardAsked;
    try {
      let board = await api("GET", boardPath());
      if (asked !== boardAsked) return; // a newer answer is on its way
      state.timeZone = board.timeZone || state.timeZone;
      if (state.day === null) {
        // the first visit: the earliest day with screenings (today when there are any left today)
        state.day = (board.days || [])[0] || "";
        if (state.day) {
          board = await api("GET", boardPath());
          if (asked !== boardAsked) return;
        }
      }
      state.movies = new Map((board.movies || []).map((m) => [m.movieId, m]));
      state.nextToken = board.nextPageToken || "";
      state.days = board.days || [];
      learnGenres(board.movies || []);
      renderDays();
      renderBoard();
      if (state.search) await loadEverything();
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
      if (asked !== boardAsked) return false; // the day changed meanwhile
      for (const movie of board.movies || []) state.movies.set(movie.movieId, movie);
      state.nextToken = board.nextPageToken || "";
      learnGenres(board.movies || []);
      renderBoard();
      return true;
    } catch (error) {
      say(`More movies could not be loaded: ${error.message}`);
      return false;
    } finally {
      button.disabled = false;
    }
  }

  async function loadEverything() {
    // a title search looks through every movie of the day, not only the pages loaded
    for (let pages = 0; state.nextToken && pages < MAX_SEARCH_PAGES; pages++) {
      if (!(await loadMore())) return;
    }
  }

  function isoDay(date, timeZone) {
    // YYYY-MM-DD of `date` in the cinema's time zone (en-CA formats dates that way)
    try {
      return new Intl.DateTimeFormat("en-CA", { timeZone, year: "numeric", month: "2-digit", day: "2-digit" }).format(date);
    } catch {
      return date.toISOString().slice(0, 10);
    }
  }

  function dayLabel(day) {
    // A date of the cinema's calendar: shown as that date, whatever the browser's time zone.
    const today = isoDay(new Date(), state.timeZone || "UTC");
    const tomorrow = isoDay(new Date(Date.now() + 86400000), state.timeZone || "UTC");
    const date = new Date(`${day}T12:00:00Z`).toLocaleDateString(undefined, {
      timeZone: "UTC", weekday: "short", day: "numeric", month: "short",
    });
    if (day === today) return { short: "Today", long: `Today, ${date}` };
    if (day === tomorrow) return { short: "Tomorrow", long: `Tomorrow, ${date}` };
    return { short: date, long: date };
  }

  function renderDays() {
    const offered = state.day && !state.days.includes(state.day) ? [state.day, ...state.days] : state.days;
    const choice = (day, label, title) => {
      const button = el("button", {
        type: "button", class: "day", "aria-pressed": String(state.day === day), title,
        dataset: { day }, text: label,
      });
      button.addEventListener("click", () => pickDay(day));
      return button;
    };
    $("days").replaceChildren(
      ...offered.map((day) => { const label = dayLabel(day); return choice(day, label.short, label.long); }),
      choice("", "All days", "Every day to come"));
  }

  function renderGenres() {
    const select = $("genre");
    const genres = [...state.genres].sort((a, b) => a.localeCompare(b));
    select.replaceChildren(el("option", { value: "", text: "All genres" }),
      ...genres.map((genre) => el("option", { value: genre, text: genre[0].toUpperCase() + genre.slice(1) })));
    select.value = state.genre;
  }

  function pickDay(day) {
    if (state.day === day) return;
    state.day = day;
    renderDays();
    const picked = $("days").querySelector(`[data-day="${day}"]`);
    if (picked) picked.focus();
    loadBoard();
  }

  function lastLoadedTitle() {
    let last = "";
    for (const movie of state.movies.values()) if (movie.title.localeCompare(last) > 0) last = movie.title;
    return last;
  }

  async function refreshMovie(movieId) {
    if (state.view.movieId === movieId) showMovie(movieId, { quiet: true });
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
    learnGenres([movie]);
    if (!known) { renderBoard(); return; }
    replaceMovie(movie, before);
  }

  function metaLine(movie) {
    const count = movie.reviewCount || 0;
    const rating = count ? el("span", { class: "rating", text: `★ ${Number(movie.averageRating || 0).toFixed(1)}` }) : null;
    return el("p", { class: "meta" },
      [(movie.genres || []).join(", "), movie.durationMinutes ? `${movie.durationMinutes} min` : ""].filter(Boolean).join(" · "),
      " · ", rating, rating ? " " : "", `${count} review${count === 1 ? "" : "s"}`);
  }

  function clock(timestamp) {
    return new Date(timestamp).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
  }

  // One screening as a compact chip: time (with its day when every day is shown), hall, free seats, price.
  function showtime(movie, s, previous, withDay) {
    state.screeningMovie.set(s.screeningId, movie.movieId);
    const free = s.freeSeats || 0;
    const total = s.totalSeats || 0;
    const changed = previous.has(s.screeningId) && previous.get(s.screeningId) !== free;
    // The accessible name is the chip's own text (what it shows), after a screen-reader-only
    // "Choose seats for <movie>, <day>," that says what pressing it does.
    const start = withDay ? when(s.startTime) : clock(s.startTime);
    const day = withDay ? "" : `${new Date(s.startTime).toLocaleDateString(undefined, { weekday: "short", day: "numeric", month: "short" })}, `;
    const chip = el("a", {
      href: `#screening=${encodeURIComponent(s.screeningId)}`, role: "button",
      class: `showtime${free ? "" : " sold-out"}${changed ? " flash" : ""}`,
      dataset: { screeningId: s.screeningId },
    },
    el("span", { class: "sr-only", text: `Choose seats for ${movie.title}, ${day}` }),
    el("strong", { class: "time", text: start }), " ",
    el("span", { class: "hall", text: `Hall ${s.hall}` }), " ",
    el("span", { class: "seats" }, el("span", { class: "free", dataset: { free }, text: `${free} of ${total}` }), " free"), " ",
    el("span", { class: "price", text: money(s.price) }));
    chip.addEventListener("keydown", (event) => { if (event.key === " ") { event.preventDefault(); chip.click(); } });
    return el("li", {}, chip);
  }

  function movieCard(movie, before) {
    const id = movie.movieId;
    const previous = new Map(((before && before.screenings) || []).map((s) => [s.screeningId, s.freeSeats || 0]));
    const times = el("ul", { class: "times", "aria-label": `Showtimes of ${movie.title}` },
      ...(movie.screenings || []).map((s) => showtime(movie, s, previous, !state.day)));
    const title = el("h3", { id: `title-${id}` },
      el("a", { href: `#movie=${encodeURIComponent(id)}`, text: movie.title }));
    return el("article", { class: "movie", id: `movie-${id}`, "aria-labelledby": `title-${id}`, dataset: { movieId: id } },
      title, metaLine(movie), times);
  }

  function matches(movie) {
    return !state.search || movie.title.toLocaleLowerCase().includes(state.search);
  }

  function renderBoard() {
    const list = $("movies");
    const movies = [...state.movies.values()].filter((m) => (m.screenings || []).length && matches(m));
    movies.sort((a, b) => a.title.localeCompare(b.title));
    list.replaceChildren(...movies.map((m) => movieCard(m)));
    $("board-empty").textContent = state.search || state.genre ? "No movie on the board matches." :
      state.day ? "Nothing is scheduled on that day." : "Nothing is scheduled yet.";
    $("board-empty").hidden = movies.length > 0;
    $("more").hidden = !state.nextToken;
  }

  function replaceMovie(movie, before) {
    const old = document.getElementById(`movie-${movie.movieId}`);
    if (!old || !(movie.screenings || []).length) { renderBoard(); return; }
    // keep the keyboard focus on the same screening's chip across the update
    const focused = document.activeElement && old.contains(document.activeElement) ? document.activeElement.dataset.screeningId : null;
    const card = movieCard(movie, before);
    old.replaceWith(card);
    if (focused) { const again = card.querySelector(`[data-screening-id="${focused}"]`); if (again) again.focus(); }
  }

  // --- the movie page (#movie=<id>) ----------------------------------------------------------------

  let movieAsked = 0;

  async function showMovie(movieId, { quiet = false } = {}) {
    const asked = ++movieAsked;
    const id = encodeURIComponent(movieId);
    try {
      const [details, board, reviews] = await Promise.all([
        api("GET", `/v1/movies/${id}`),
        api("GET", `/v1/board?movieId=${id}`),
        api("GET", `/v1/movies/${id}/reviews?pageSize=20`).catch(() => ({ reviews: [] })),
      ]);
      if (asked !== movieAsked || state.view.movieId !== movieId) return;
      const movie = details.movie;
      const entry = (board.movies || [])[0] || { movieId, title: movie.title, genres: movie.genres, durationMinutes: movie.durationMinutes, screenings: [] };
      $("movie-view-title").textContent = movie.title;
      $("movie-view-meta").replaceWith(Object.assign(metaLine(entry), { id: "movie-view-meta" }));
      $("movie-view-description").textContent = movie.description || "";
      const byDay = new Map();
      for (const s of entry.screenings || []) {
        const day = isoDay(new Date(s.startTime), board.timeZone || state.timeZone || "UTC");
        if (!byDay.has(day)) byDay.set(day, []);
        byDay.get(day).push(s);
      }
      $("movie-view-times").replaceChildren(...[...byDay.entries()].map(([day, screenings]) =>
        el("div", { class: "day-group" },
          el("h4", { text: dayLabel(day).long }),
          el("ul", { class: "times", "aria-label": `Showtimes on ${dayLabel(day).long}` },
            ...screenings.map((s) => showtime(entry, s, new Map(), false))))));
      $("movie-view-none").hidden = byDay.size > 0;
      const list = (reviews && reviews.reviews) || [];
      $("movie-view-reviews").replaceChildren(...list.map((r) =>
        el("li", { class: "review" },
          el("p", { class: "review-head" },
            el("span", { class: "rating", text: `${"★".repeat(r.rating || 0)}${"☆".repeat(5 - (r.rating || 0))}`, "aria-label": `${r.rating} of 5` }),
            " ", el("span", { text: r.authorName || "A customer" }), " · ",
            el("span", { class: "muted", text: when(r.createTime) })),
          r.text ? el("p", { text: r.text }) : null)));
      $("movie-view-no-reviews").hidden = list.length > 0;
      if (!quiet) $("movie-view-title").focus();
    } catch (error) {
      if (asked !== movieAsked) return;
      say(error.status === 404 ? "That movie is not in the catalog." : `The movie could not be loaded: ${error.message}`);
      if (error.status === 404) location.hash = "";
    }
  }

  // --- views: the board, a movie, a screening's seat map (the address says which) ------------------

  function route() {
    const hash = new URLSearchParams(location.hash.slice(1));
    const movieId = hash.get("movie");
    const screeningId = hash.get("screening");
    state.view = { movieId, screeningId };
    $("board").hidden = !!(movieId || screeningId);
    $("movie-view").hidden = !movieId;
    if (movieId) showMovie(movieId);
    if (screeningId) {
      if (!state.booking || state.booking.screeningId !== screeningId) openBooking(screeningId);
    } else if (state.booking) {
      closeBooking();
    }
    if (!movieId && !screeningId && state.returnTo) {
      const back = document.querySelector(`[data-screening-id="${state.returnTo}"]`);
      if (back) back.focus();
    }
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
    // Everybody sees the seats (availability is public); paying needs a customer's sign-in.
    const movieId = state.screeningMovie.get(screeningId);
    const movie = state.movies.get(movieId);
    const screening = movie && movie.screenings.find((s) => s.screeningId === screeningId);
    state.returnTo = screeningId;
    state.booking = {
      screeningId, movieId, title: movie ? movie.title : "", startTime: screening && screening.startTime,
      hall: screening && screening.hall, price: screening && screening.price,
      seatMap: null, taken: new Set(), chosen: new Set(), requestId: null,
    };
    const booking = state.booking;
    $("booking").hidden = false;
    $("booking-what").textContent = booking.title ? `${booking.title}, ${when(booking.startTime)}, hall ${booking.hall}` : "";
    renderPayer();
    if (!screening) {
      // reached by its address: what the screening is comes from the catalog
      try {
        const reply = await api("GET", `/v1/screenings/${encodeURIComponent(screeningId)}`);
        const s = reply.screening;
        Object.assign(booking, { movieId: s.movieId, title: s.movieTitle, startTime: s.startTime, hall: s.hall, price: s.price });
        $("booking-what").textContent = `${booking.title}, ${when(booking.startTime)}, hall ${booking.hall}`;
      } catch (error) {
        if (state.booking !== booking) return;
        say(error.status === 404 || error.status === 400 ? "That screening is not in the catalog." : `The screening could not be loaded: ${error.message}`);
        location.hash = "";
        return;
      }
    }
    await refreshAvailability();
    if (state.booking !== booking) return;
    const first = $("seatmap").querySelector("button:not(:disabled)");
    $("booking").scrollIntoView({ block: "start" });
    if (first) first.focus();
  }

  function renderPayer() {
    const customer = hasRole("customer");
    const card = $("pay").querySelector("fieldset");
    card.hidden = !customer;
    card.disabled = !customer; // its required inputs must not block a visitor's form
    $("pay-button").textContent = customer ? "Pay and reserve" : "Sign in to reserve";
  }

  function closeBooking() {
    state.booking = null;
    $("booking").hidden = true;
    $("seatmap").replaceChildren();
    if (new URLSearchParams(location.hash.slice(1)).get("screening")) {
      history.pushState(null, "", location.pathname + location.search);
      route();
    }
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
          type: "button", class: "seat", text: seat, dataset: { seat },
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
    if (!hasRole("customer")) {
      say("Sign in as a customer to reserve seats: your choice stays while you do.");
      $("username").focus();
      return;
    }
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
        el("td", { "data-label": "Starts", text: when(r.startTime) }),
        el("td", { "data-label": "Hall", text: r.hall }),
        el("td", { class: "seats", "data-label": "Seats", text: (r.seats || []).join(", ") }),
        el("td", { "data-label": "Amount", text: money(r.amount) }),
        el("td", { class: "state", "data-label": "State", text: humanState(r.state) }),
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
  $("signup").addEventListener("submit", signUp);
  $("signout").addEventListener("click", () => { signOut(); say(""); $("username").focus(); });
  $("pay").addEventListener("submit", pay);
  $("booking-close").addEventListener("click", closeBooking);
  $("movie-form").addEventListener("submit", registerMovie);
  $("screening-form").addEventListener("submit", scheduleScreening);
  $("genre").addEventListener("change", (event) => { state.genre = event.target.value; loadBoard(); });
  const searchFor = debounce(() => {
    state.search = $("search").value.trim().toLocaleLowerCase();
    renderBoard();
    if (state.search) loadEverything();
  }, 200);
  $("search").addEventListener("input", () => searchFor("search"));
  $("board-filter").addEventListener("submit", (event) => event.preventDefault());
  window.addEventListener("hashchange", route);
  $("more").addEventListener("click", loadMore);
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (!saved || !adopt(saved)) {
    sessionStorage.removeItem(TOKEN_KEY);
    // the access token ended (or is gone) but the session has a refresh token: carry on with it
    if (sessionStorage.getItem(REFRESH_KEY)) renew().then((ok) => { if (ok) renderAccount(); });
  }
  renderAccount();
  connectLive();
  loadBoard();
  route();
})();
