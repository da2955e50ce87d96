"""The HTTP face of the web service (Starlette).

- `GET /`: the page (text/html), or, when the client asks for `text/event-stream` (what a
  browser's EventSource sends), the live updates of the board as Server-Sent Events:
  `event: change` with `{"movie_id", "screening_id"}` after each applied change, `event: resync`
  when changes may have been missed (refetch everything), comment lines as heartbeats; every
  message has an `id`. A stream ends after `WEB_STREAM_MAX_S`; the browser reconnects by itself
  (`retry:` 1 s) sending `Last-Event-ID`, and gets what it missed meanwhile. One path
  for both keeps the page to ONE public path at the ingress (no JWT there; every API call the
  page makes carries the user's token).
- `GET /manager`: the manager's page (public HTML, like `/`): sales per screening and movie, a chart
  of sales over time, and who booked each screening, from the REST API with a manager's token.
- `GET /mesh`: the mesh page (public HTML, like `/`); its data, for managers only (a manager's
  bearer token, else 401/403): `GET /mesh/state` (the latest sample of the one sampler),
  `GET /mesh/trace?reservation=ID` (the reservation's trace as a waterfall, from Jaeger) and
  `GET /mesh/recent` (reservations with a recorded trace, newest first).
- `GET /healthz` (200 `serving`, with `live` telling whether changes are followed; 503 while
  draining) and `GET /metrics` (Prometheus).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.kit import errors
from services.web.bootstrap import WebApp
from services.web.page import Page, build_page
from services.web.service_layer import mesh_traces
from services.web.service_layer.fanout import END, RESYNC, BoardChange, ChangeFanout, Sequenced, TooManyStreams

log = logging.getLogger(__name__)

EVENT_STREAM = "text/event-stream"
RECONNECT_MS = 1000

STREAMS_OPEN = Gauge("web_streams_open", "Live-update streams open now.")
STREAMS_REFUSED = Counter("web_streams_refused_total", "Live-update streams refused (all slots taken, or stopping).")
NOTICES_SENT = Counter("web_notices_sent_total", "Notices written to live-update streams, by kind.", ("kind",))
HTTP_REQUESTS = Counter(
    "web_http_requests_total", "HTTP requests, by route, method and status.", ("route", "method", "status")
)

_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


@dataclass
class HttpState:
    app: WebApp
    draining: bool = False


def wants_event_stream(request: Request) -> bool:
    accepted = [part.split(";", 1)[0].strip().lower() for part in request.headers.get("accept", "").split(",")]
    return EVENT_STREAM in accepted


def sse(fanout: ChangeFanout, item: Sequenced) -> str:
    """One notice as an SSE message; its id lets a reconnecting page get what it missed."""
    notice = item.notice
    if isinstance(notice, BoardChange):
        data = json.dumps({"movie_id": notice.movie_id, "screening_id": notice.screening_id})
        return f"id: {fanout.event_id(item.seq)}\nevent: change\ndata: {data}\n\n"
    return f"id: {fanout.event_id(item.seq)}\nevent: resync\ndata: {{}}\n\n"


def build_app(state: HttpState) -> Starlette:
    app = state.app
    settings = app.settings

    async def page_or_stream(request: Request) -> Response:
        if request.method == "GET" and wants_event_stream(request):
            return open_stream(request.headers.get("last-event-id"))
        page = app.page
        headers = {
            **_SECURITY_HEADERS,
            "Content-Security-Policy": page.content_security_policy,
            "Cache-Control": "no-cache",
            "ETag": page.etag,
            "Vary": "Accept",
        }
        if request.headers.get("if-none-match") == page.etag:
            return Response(status_code=304, headers=headers)
        # the server leaves the body out of a HEAD answer, and the length stays true
        return Response(page.html, media_type="text/html; charset=utf-8", headers=headers)

    def open_stream(last_event_id: str | None) -> Response:
        try:
            subscription = app.fanout.subscribe(last_event_id)
        except TooManyStreams:
            STREAMS_REFUSED.inc()
            return JSONResponse({"error": "no live-update stream available"}, 503, headers={"Retry-After": "5"})

        # A new page starts from the newest notice; a reconnecting one keeps the id it sent.
        start = "" if last_event_id else f"id: {app.fanout.position}\n"

        async def notices() -> AsyncIterator[str]:
            STREAMS_OPEN.inc()
            loop = asyncio.get_running_loop()
            ends_at = loop.time() + settings.stream_max_s
            try:
                # the reconnection delay and a first line, so proxies and the browser see the stream open
                yield f"retry: {RECONNECT_MS}\n{start}: board changes\n\n"
                while (left := ends_at - loop.time()) > 0:
                    try:
                        item = await asyncio.wait_for(subscription.next(), timeout=min(settings.heartbeat_s, left))
                    except TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    if item.notice is END:
                        break
                    NOTICES_SENT.labels("resync" if item.notice is RESYNC else "change").inc()
                    yield sse(app.fanout, item)
            finally:
                app.fanout.unsubscribe(subscription)
                STREAMS_OPEN.dec()

        headers = {**_SECURITY_HEADERS, "Cache-Control": "no-store", "Vary": "Accept", "X-Accel-Buffering": "no"}
        return StreamingResponse(notices(), media_type=EVENT_STREAM, headers=headers)

    def mesh_page(request: Request) -> Response:
        return static_page(request, app.mesh_page)

    manager = build_page("manager.html", "app.css", "manager.js", extra_style="manager.css")

    def manager_page(request: Request) -> Response:
        # The manager's page (static/manager.html): public like `/`; the API calls it makes carry
        # the manager's token, and the sales and reservations it shows are for role `manager`.
        return static_page(request, manager)

    async def refused_unless_manager(request: Request) -> Response | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return JSONResponse({"error": "sign in as a manager"}, 401, headers={"WWW-Authenticate": "Bearer"})
        try:
            caller = await app.verifier.verify(token.strip())
        except errors.Unauthenticated as error:
            return JSONResponse({"error": str(error)}, 401, headers={"WWW-Authenticate": "Bearer"})
        if not caller.has_role("manager"):
            return JSONResponse({"error": "the mesh is for managers"}, 403)
        return None

    def private_json(body: object, status: int = 200) -> Response:
        return JSONResponse(body, status, headers={**_SECURITY_HEADERS, "Cache-Control": "no-store"})

    async def mesh_state(request: Request) -> Response:
        if refused := await refused_unless_manager(request):
            return refused
        view = await app.mesh.latest()
        if view is None:
            return private_json({"error": "no sample yet"}, 503)
        return private_json({**view.as_dict(), "sampled_at_unix": time.time() - (time.monotonic() - view.at)})

    async def mesh_trace(request: Request) -> Response:
        if refused := await refused_unless_manager(request):
            return refused
        reservation = request.query_params.get("reservation", "").strip()
        if not mesh_traces.RESERVATION_ID.match(reservation):
            return private_json({"error": "give a reservation id (letters, digits, - and _)"}, 400)
        try:
            trace = mesh_traces.best_trace(await app.traces.of_reservation(reservation))
        except httpx.HTTPError as error:
            return private_json({"error": f"Jaeger does not answer: {type(error).__name__}"}, 503)
        if trace is None:
            return private_json({"error": "no trace of this reservation (traces are sampled, kept in memory)"}, 404)
        rows = mesh_traces.waterfall(trace)
        return private_json({"trace_id": trace.get("traceID", ""), "spans": [r.as_dict() for r in rows]})

    async def mesh_recent(request: Request) -> Response:
        if refused := await refused_unless_manager(request):
            return refused
        try:
            ids = mesh_traces.reservation_ids(await app.traces.recent_reservations())
        except httpx.HTTPError as error:
            return private_json({"error": f"Jaeger does not answer: {type(error).__name__}"}, 503)
        return private_json({"reservations": ids})

    async def healthz(request: Request) -> Response:
        if state.draining:
            return JSONResponse({"status": "draining"}, 503)
        return JSONResponse({"status": "serving", "live": app.live, "streams": app.fanout.subscribers})

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    starlette = Starlette(
        routes=[
            Route("/", page_or_stream, methods=["GET", "HEAD"]),
            Route("/mesh", mesh_page, methods=["GET", "HEAD"]),
            Route("/mesh/state", mesh_state, methods=["GET"]),
            Route("/mesh/trace", mesh_trace, methods=["GET"]),
            Route("/mesh/recent", mesh_recent, methods=["GET"]),
            Route("/manager", manager_page, methods=["GET", "HEAD"]),
            Route("/healthz", healthz, methods=["GET", "HEAD"]),
            Route("/metrics", metrics, methods=["GET"]),
        ]
    )
    starlette.add_middleware(CountedRequests)
    return starlette


def static_page(request: Request, page: Page) -> Response:
    """A page built at start-up, with its CSP, revalidated by its ETag."""
    headers = {
        **_SECURITY_HEADERS,
        "Content-Security-Policy": page.content_security_policy,
        "Cache-Control": "no-cache",
        "ETag": page.etag,
    }
    if request.headers.get("if-none-match") == page.etag:
        return Response(status_code=304, headers=headers)
    return Response(page.html, media_type="text/html; charset=utf-8", headers=headers)


class CountedRequests:
    """A request counter; labels use the path only when it is one of ours (bounded series)."""

    _KNOWN = frozenset({"/", "/manager", "/healthz", "/metrics", "/mesh", "/mesh/state", "/mesh/trace", "/mesh/recent"})

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        route = path if path in self._KNOWN else "other"
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            HTTP_REQUESTS.labels(route, scope.get("method", "GET"), str(status)).inc()
