"""The HTTP API of the identity service (Starlette): OAuth2 token endpoint, JWKS, discovery,
health and metrics. Thin: it parses the protocol, calls the use cases and writes the answer.

- `POST /oauth2/token` (RFC 6749 §4.3 password, §4.4 client_credentials; client authentication by
  HTTP Basic or by `client_id`/`client_secret` in the form, never both). Only POST (else 405),
  only `application/x-www-form-urlencoded` (else 400 invalid_request), at most
  `IDENTITY_MAX_FORM_BYTES` (else 413), every parameter at most once. Errors are RFC 6749 §5.2
  JSON; invalid_client is 401 with `WWW-Authenticate: Basic`; a username or client locked after
  repeated failures gets 429 with `Retry-After` (error invalid_grant); a store outage 503
  (temporarily_unavailable). Every answer carries `Cache-Control: no-store`.
- `GET /.well-known/jwks.json`, `GET /.well-known/openid-configuration` (also served as
  `/.well-known/oauth-authorization-server`, RFC 8414), `GET /healthz`, `GET /metrics`.

Nothing here logs a password, a secret or a token; the kit's log redaction is the second line.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import propagate, trace
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.identity.domain.model import ROLE_NAMES
from services.identity.service_layer import keys as key_use_cases
from services.identity.service_layer.dependencies import IdentityDependencies
from services.identity.service_layer.tokens import (
    INVALID_GRANT,
    TOO_MANY_ATTEMPTS,
    ClientCredentials,
    IssuedToken,
    TokenService,
)
from services.kit.errors import DomainError, FailedPrecondition, InvalidArgument, Unauthenticated, Unavailable

log = logging.getLogger(__name__)
tracer = trace.get_tracer("services.identity")

TOKEN_PATH = "/oauth2/token"  # noqa: S105 - a path, not a password
JWKS_PATH = "/.well-known/jwks.json"
DISCOVERY_PATH = "/.well-known/openid-configuration"
RFC8414_PATH = "/.well-known/oauth-authorization-server"
GRANT_TYPES = ("password", "client_credentials")
_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

TOKENS_ISSUED = Counter("identity_tokens_issued_total", "Access tokens issued, by grant type.", ("grant_type",))
TOKENS_REFUSED = Counter(
    "identity_tokens_refused_total", "Token requests refused, by grant type and reason.", ("grant_type", "reason")
)
TOKEN_SECONDS = Histogram(
    "identity_token_request_seconds",
    "Time to answer a token request (argon2 included), by grant type.",
    ("grant_type",),
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
HTTP_REQUESTS = Counter(
    "identity_http_requests_total", "HTTP requests, by route, method and status.", ("route", "method", "status")
)


class OAuthError(Exception):
    """A protocol-level refusal found while parsing the request (before any use case runs)."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


@dataclass
class HttpContext:
    """What the HTTP layer needs from the composition root."""

    deps: IdentityDependencies
    tokens: TokenService
    issuer: str
    public_url: str
    max_form_bytes: int
    jwks_max_age_s: int
    ready: Callable[[], Awaitable[bool]]
    draining: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def oauth_error(
    error: str, description: str, status: int = 400, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": error, "error_description": description}, status_code=status, headers={**_NO_STORE, **(headers or {})}
    )


def _invalid_client(description: str) -> JSONResponse:
    return oauth_error(
        "invalid_client", description, 401, {"WWW-Authenticate": 'Basic realm="cinema", charset="UTF-8"'}
    )


def error_response(error: DomainError) -> tuple[JSONResponse, str]:
    """The RFC 6749 §5.2 answer to a use case's typed error, and the metric reason."""
    if isinstance(error, InvalidArgument):
        fields = {violation.field for violation in error.violations}
        code = "invalid_scope" if "scope" in fields else "invalid_request"
        return oauth_error(code, error.message), code
    if isinstance(error, Unauthenticated):
        return _invalid_client(error.message), "invalid_client"
    if isinstance(error, FailedPrecondition) and error.reason == TOO_MANY_ATTEMPTS:
        retry_after = error.metadata.get("retry_after_s", "60")
        return oauth_error("invalid_grant", error.message, 429, {"Retry-After": retry_after}), "too_many_attempts"
    if isinstance(error, FailedPrecondition) and error.reason == INVALID_GRANT:
        return oauth_error("invalid_grant", error.message), "invalid_grant"
    if isinstance(error, Unavailable):
        retry = {"Retry-After": str(max(1, round(error.retry_after_s)))}
        return oauth_error("temporarily_unavailable", error.message, 503, retry), "temporarily_unavailable"
    log.error("unexpected domain error from a token use case: %s", error.message)
    return oauth_error("server_error", "the request could not be completed", 500), "server_error"


def _parse_form(body: bytes) -> dict[str, str]:
    try:
        text = body.decode("utf-8")
        pairs = urllib.parse.parse_qsl(text, keep_blank_values=True, strict_parsing=False, max_num_fields=32)
    except (UnicodeDecodeError, ValueError):
        raise OAuthError("invalid_request", "the form is not valid UTF-8 application/x-www-form-urlencoded") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise OAuthError("invalid_request", f"parameter {name!r} is repeated")
        # RFC 6749 §3.1: a parameter sent without a value is treated as omitted.
        if value != "":
            form[name] = value
    return form


def _basic_credentials(header: str) -> ClientCredentials:
    """RFC 6749 §2.3.1: base64(urlencode(client_id) ":" urlencode(client_secret))."""
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        raise OAuthError("invalid_client", "unsupported client authentication scheme (use Basic)", 401)
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise OAuthError("invalid_client", "malformed Basic credentials", 401) from None
    client_id, separator, secret = decoded.partition(":")
    if not separator or not client_id:
        raise OAuthError("invalid_client", "malformed Basic credentials", 401)
    return ClientCredentials(urllib.parse.unquote_plus(client_id), urllib.parse.unquote_plus(secret))


def _client_credentials(request: Request, form: Mapping[str, str]) -> ClientCredentials | None:
    header = request.headers.get("authorization")
    in_form = "client_secret" in form
    if header is not None and in_form:
        raise OAuthError("invalid_request", "use one client authentication method, not both")
    if header is not None:
        return _basic_credentials(header)
    if in_form:
        if "client_id" not in form:
            raise OAuthError("invalid_request", "client_secret without client_id")
        return ClientCredentials(form["client_id"], form["client_secret"])
    return None


async def _read_form(request: Request, limit: int) -> dict[str, str]:
    content_type = request.headers.get("content-type", "")
    if content_type.split(";", 1)[0].strip().lower() != "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request", "the body must be application/x-www-form-urlencoded")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise OAuthError("invalid_request", f"the form is larger than {limit} bytes", 413)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise OAuthError("invalid_request", f"the form is larger than {limit} bytes", 413)
    return _parse_form(bytes(body))


def _token_response(issued: IssuedToken) -> JSONResponse:
    body: dict[str, Any] = {
        "access_token": issued.access_token,
        "token_type": issued.token_type,
        "expires_in": issued.expires_in,
    }
    if issued.scope:
        body["scope"] = issued.scope
    return JSONResponse(body, headers=_NO_STORE)


def build_app(context: HttpContext) -> Starlette:
    async def token(request: Request) -> Response:
        if request.method != "POST":
            return oauth_error("invalid_request", "the token endpoint accepts only POST", 405, {"Allow": "POST"})
        started = time.perf_counter()
        grant = "unknown"
        try:
            form = await _read_form(request, context.max_form_bytes)
            grant_type = form.get("grant_type")
            if grant_type is None:
                raise OAuthError("invalid_request", "grant_type is required")
            if grant_type not in GRANT_TYPES:
                raise OAuthError("unsupported_grant_type", f"grant_type must be one of {', '.join(GRANT_TYPES)}")
            grant = grant_type
            client = _client_credentials(request, form)
            if grant_type == "password":
                missing = [name for name in ("username", "password") if name not in form]
                if missing:
                    raise OAuthError("invalid_request", f"{' and '.join(missing)} required")
                issued = await context.tokens.password_grant(
                    form["username"], form["password"], form.get("scope"), client
                )
            else:
                issued = await context.tokens.client_credentials_grant(client, form.get("scope"))
        except OAuthError as refusal:
            TOKENS_REFUSED.labels(grant, refusal.error).inc()
            log.info(
                "token refused", extra={"grant_type": grant, "error": refusal.error, "reason": refusal.description}
            )
            if refusal.error == "invalid_client":
                return _invalid_client(refusal.description)
            return oauth_error(refusal.error, refusal.description, refusal.status)
        except DomainError as error:
            response, reason = error_response(error)
            TOKENS_REFUSED.labels(grant, reason).inc()
            log.info("token refused", extra={"grant_type": grant, "error": reason, "reason": error.message})
            return response
        finally:
            TOKEN_SECONDS.labels(grant).observe(time.perf_counter() - started)
        TOKENS_ISSUED.labels(grant).inc()
        log.info(
            "token issued", extra={"grant_type": grant, "subject": issued.subject, "expires_in": issued.expires_in}
        )
        return _token_response(issued)

    async def jwks(request: Request) -> Response:
        try:
            document = await key_use_cases.jwks(context.deps)
        except Unavailable as error:
            return JSONResponse({"error": "temporarily_unavailable", "error_description": error.message}, 503)
        return JSONResponse(
            document,
            headers={"Cache-Control": f"public, max-age={context.jwks_max_age_s}"},
            media_type="application/jwk-set+json",
        )

    discovery_document = {
        "issuer": context.issuer,
        "token_endpoint": context.public_url + TOKEN_PATH,
        "jwks_uri": context.public_url + JWKS_PATH,
        "grant_types_supported": list(GRANT_TYPES),
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "response_types_supported": [],  # no authorization endpoint: tokens come from the token endpoint only
        "scopes_supported": sorted(ROLE_NAMES),
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [context.deps.algorithm],
        "token_endpoint_auth_signing_alg_values_supported": [],
        "claims_supported": sorted(
            {
                "iss",
                "aud",
                "sub",
                "roles",
                "scope",
                "exp",
                "iat",
                "nbf",
                "jti",
                "client_id",
                "preferred_username",
                "email",
            }
        ),
    }

    async def discovery(request: Request) -> Response:
        return JSONResponse(discovery_document, headers={"Cache-Control": "public, max-age=300"})

    async def healthz(request: Request) -> Response:
        if context.draining:
            return JSONResponse({"status": "draining"}, 503)
        if not await context.ready():
            return JSONResponse({"status": "store unavailable"}, 503)
        return JSONResponse({"status": "serving"})

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    routes = [
        Route(TOKEN_PATH, token, methods=_ALL_METHODS),
        Route(JWKS_PATH, jwks, methods=["GET", "HEAD"]),
        Route(DISCOVERY_PATH, discovery, methods=["GET", "HEAD"]),
        Route(RFC8414_PATH, discovery, methods=["GET", "HEAD"]),
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    app = Starlette(routes=routes)
    app.add_middleware(ObservedRequests)
    return app


class ObservedRequests:
    """One span per request (continuing the caller's W3C trace) and a request counter.

    Labels use the path only when it is one of ours, so random paths cannot blow up the series.
    """

    _KNOWN = frozenset({TOKEN_PATH, JWKS_PATH, DISCOVERY_PATH, RFC8414_PATH, "/healthz", "/metrics"})

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        route = path if path in self._KNOWN else "other"
        method = scope.get("method", "GET")
        headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in scope.get("headers", [])}
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        parent = propagate.extract(headers)
        with tracer.start_as_current_span(
            f"{method} {route}", context=parent, kind=trace.SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": route},
        ) as span:  # fmt: skip
            try:
                await self.app(scope, receive, sending)
            finally:
                span.set_attribute("http.response.status_code", status)
                HTTP_REQUESTS.labels(route, method, str(status)).inc()
