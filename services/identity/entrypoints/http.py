"""The HTTP API of the identity service (Starlette): OAuth2 token and revocation endpoints, sign-up,
JWKS, discovery, health and metrics. Thin: it parses the protocol, calls the use cases and writes
the answer.

- `POST /oauth2/token` (RFC 6749 §4.3 password, §4.4 client_credentials, §6 refresh_token; client
  authentication by HTTP Basic or by `client_id`/`client_secret` in the form, never both). Only
  POST (else 405), only `application/x-www-form-urlencoded` (else 400 invalid_request), at most
  `IDENTITY_MAX_FORM_BYTES` (else 413), every parameter at most once. The password and refresh
  grants answer with a `refresh_token` too. Errors are RFC 6749 §5.2 JSON (`error`,
  `error_description`) that is also a `google.rpc.Status` (`code`, `message`, `details`), so an
  OAuth2 client and the edge's other clients both read it; invalid_client is 401 with
  `WWW-Authenticate: Basic`; an address locked out of an account after repeated failures gets 429
  with `Retry-After` and RetryInfo (error invalid_grant); a store outage 503
  (temporarily_unavailable). Every answer carries `Cache-Control: no-store`.
- `POST /oauth2/revoke` (RFC 7009): `token` (a refresh token; `token_type_hint` is only a hint)
  revokes its family; 200 also for a token we do not know.
- `POST /v1/accounts` (JSON `{"email", "password"}`): a customer signs up; 201 with the account,
  or a `google.rpc.Status` (400 INVALID_ARGUMENT with BadRequest, 409 ALREADY_EXISTS).
- `GET /.well-known/jwks.json`, `GET /.well-known/openid-configuration` (also served as
  `/.well-known/oauth-authorization-server`, RFC 8414), `GET /healthz`, `GET /metrics`.

The client's address (what sign-in throttling is keyed by) is the header the edge sets
(`IDENTITY_CLIENT_ADDRESS_HEADER`, Envoy's `x-envoy-external-address`) when the peer is a trusted
proxy (`IDENTITY_TRUSTED_PROXIES`), else the peer itself.

Nothing here logs a password, a secret or a token; the kit's log redaction is the second line.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import logging
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format
from opentelemetry import propagate, trace
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.identity.domain.model import ROLE_NAMES
from services.identity.service_layer import accounts
from services.identity.service_layer import keys as key_use_cases
from services.identity.service_layer.dependencies import IdentityDependencies
from services.identity.service_layer.tokens import (
    INVALID_GRANT,
    TOO_MANY_ATTEMPTS,
    UNKNOWN_ADDRESS,
    ClientCredentials,
    IssuedToken,
    TokenService,
)
from services.kit.errors import (
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from services.kit.grpc_errors import ERROR_DOMAIN, domain_error_status

log = logging.getLogger(__name__)
tracer = trace.get_tracer("services.identity")

TOKEN_PATH = "/oauth2/token"  # noqa: S105 - a path, not a password
REVOKE_PATH = "/oauth2/revoke"
ACCOUNTS_PATH = "/v1/accounts"
JWKS_PATH = "/.well-known/jwks.json"
DISCOVERY_PATH = "/.well-known/openid-configuration"
RFC8414_PATH = "/.well-known/oauth-authorization-server"
GRANT_TYPES = ("password", "client_credentials", "refresh_token")
TOKEN_TYPE_HINTS = ("refresh_token", "access_token")
Networks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]

# google.rpc.Code of each RFC 6749 §5.2 / RFC 7009 error, for the Status half of an error body
_RPC_CODE = {
    "invalid_request": 3,  # INVALID_ARGUMENT
    "invalid_scope": 3,
    "unsupported_grant_type": 3,
    "unsupported_token_type": 3,
    "invalid_client": 16,  # UNAUTHENTICATED
    "invalid_grant": 16,
    "temporarily_unavailable": 14,  # UNAVAILABLE
    "server_error": 13,  # INTERNAL
}
_HTTP_OF_RPC = {3: 400, 5: 404, 6: 409, 7: 403, 8: 429, 9: 400, 12: 405, 13: 500, 14: 503, 16: 401}
_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

TOKENS_ISSUED = Counter("identity_tokens_issued_total", "Access tokens issued, by grant type.", ("grant_type",))
TOKENS_REFUSED = Counter(
    "identity_tokens_refused_total", "Token requests refused, by grant type and reason.", ("grant_type", "reason")
)
SIGN_UPS = Counter("identity_sign_ups_total", "Sign-up requests, by outcome.", ("outcome",))
REVOCATIONS = Counter("identity_revocations_total", "Revocation requests, by outcome.", ("outcome",))
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
    trusted_proxies: Networks = ()
    client_address_header: str = "x-envoy-external-address"
    signup_enabled: bool = True
    draining: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _duration(seconds: float) -> str:
    """A protobuf JSON Duration (`30s`, `0.250s`)."""
    return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"


def oauth_error(
    error: str,
    description: str,
    status: int = 400,
    headers: Mapping[str, str] | None = None,
    *,
    rpc_code: int | None = None,
    reason: str | None = None,
    retry_after_s: float | None = None,
    metadata: Mapping[str, str] | None = None,
) -> JSONResponse:
    """An RFC 6749 §5.2 error that is also a `google.rpc.Status` (ErrorInfo, and RetryInfo when
    the client should come back later)."""
    details: list[dict[str, Any]] = []
    if retry_after_s is not None:
        details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": _duration(retry_after_s)})
    details.append(
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": reason or error.upper(),
            "domain": ERROR_DOMAIN,
            "metadata": dict(metadata or {}),
        }
    )
    body = {
        "error": error,
        "error_description": description,
        "code": rpc_code if rpc_code is not None else _RPC_CODE.get(error, 3),
        "message": description,
        "details": details,
    }
    return JSONResponse(body, status_code=status, headers={**_NO_STORE, **(headers or {})})


def status_response(error: DomainError, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """A use case's typed error as the `google.rpc.Status` JSON the REST gateway answers with."""
    status = domain_error_status(error)
    body = json_format.MessageToDict(status)
    body.setdefault("code", 0)
    extra = dict(headers or {})
    if isinstance(error, Unavailable):
        extra["Retry-After"] = str(max(1, round(error.retry_after_s)))
    return JSONResponse(body, status_code=_HTTP_OF_RPC.get(status.code, 400), headers={**_NO_STORE, **extra})


def plain_status(code: int, message: str, reason: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """A `google.rpc.Status` with an ErrorInfo, for refusals of the HTTP layer itself (404, 405, 413)."""
    body = {
        "code": code,
        "message": message,
        "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": ERROR_DOMAIN}],
    }
    return JSONResponse(body, status_code=_HTTP_OF_RPC.get(code, 400), headers={**_NO_STORE, **(headers or {})})


def client_address(request: Request, trusted: Networks, header: str) -> str:
    """Who is calling, as far as we can trust it: the edge's header when the peer is a trusted
    proxy (the edge overwrites whatever a client sent in it), else the peer's own address."""
    peer = request.client.host if request.client else ""
    try:
        peer_ip = ipaddress.ip_address(peer)
    except ValueError:
        return peer or UNKNOWN_ADDRESS
    if any(peer_ip in network for network in trusted):
        forwarded = request.headers.get(header, "").strip()
        if forwarded:
            try:
                return str(ipaddress.ip_address(forwarded))
            except ValueError:
                log.warning("the client address header is not an address; using the peer", extra={"header": header})
    return str(peer_ip)


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
        response = oauth_error(
            "invalid_grant",
            error.message,
            429,
            {"Retry-After": retry_after},
            rpc_code=8,  # RESOURCE_EXHAUSTED
            reason=TOO_MANY_ATTEMPTS,
            retry_after_s=float(retry_after),
            metadata=error.metadata,
        )
        return response, "too_many_attempts"
    if isinstance(error, FailedPrecondition) and error.reason == INVALID_GRANT:
        return oauth_error("invalid_grant", error.message), "invalid_grant"
    if isinstance(error, Unavailable):
        retry = {"Retry-After": str(max(1, round(error.retry_after_s)))}
        response = oauth_error(
            "temporarily_unavailable", error.message, 503, retry, reason=error.reason, retry_after_s=error.retry_after_s
        )
        return response, "temporarily_unavailable"
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
    if issued.refresh_token is not None:
        body["refresh_token"] = issued.refresh_token
        body["refresh_token_expires_in"] = issued.refresh_expires_in
    return JSONResponse(body, headers=_NO_STORE)


async def _read_json(request: Request, limit: int) -> dict[str, Any]:
    # Any content type, as the REST gateway does (`curl -d '{...}'` says form-urlencoded): the
    # body must be a JSON object whatever the header claims.
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise InvalidArgument(f"the body is larger than {limit} bytes")
    try:
        document = json.loads(bytes(body) or b"null")
    except (UnicodeDecodeError, ValueError):
        raise InvalidArgument("the body is not valid JSON") from None
    if not isinstance(document, dict):
        raise InvalidArgument("the body must be a JSON object")
    return document


def build_app(context: HttpContext) -> Starlette:
    def address_of(request: Request) -> str:
        return client_address(request, context.trusted_proxies, context.client_address_header)

    async def token(request: Request) -> Response:
        if request.method != "POST":
            return oauth_error(
                "invalid_request", "the token endpoint accepts only POST", 405, {"Allow": "POST"}, rpc_code=12
            )
        started = time.perf_counter()
        grant = "unknown"
        address = address_of(request)
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
                    form["username"], form["password"], form.get("scope"), client, address
                )
            elif grant_type == "refresh_token":
                if "refresh_token" not in form:
                    raise OAuthError("invalid_request", "refresh_token required")
                issued = await context.tokens.refresh_token_grant(
                    form["refresh_token"], form.get("scope"), client, address
                )
            else:
                issued = await context.tokens.client_credentials_grant(client, form.get("scope"), address)
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
            log.info(
                "token refused",
                extra={"grant_type": grant, "error": reason, "reason": error.message, "client_address": address},
            )
            return response
        finally:
            TOKEN_SECONDS.labels(grant).observe(time.perf_counter() - started)
        TOKENS_ISSUED.labels(grant).inc()
        log.info(
            "token issued", extra={"grant_type": grant, "subject": issued.subject, "expires_in": issued.expires_in}
        )
        return _token_response(issued)

    async def revoke(request: Request) -> Response:
        if request.method != "POST":
            return oauth_error(
                "invalid_request", "the revocation endpoint accepts only POST", 405, {"Allow": "POST"}, rpc_code=12
            )
        try:
            form = await _read_form(request, context.max_form_bytes)
            if "token" not in form:
                raise OAuthError("invalid_request", "token required")
            hint = form.get("token_type_hint")
            if hint is not None and hint not in TOKEN_TYPE_HINTS:
                raise OAuthError(
                    "unsupported_token_type", f"token_type_hint must be one of {', '.join(TOKEN_TYPE_HINTS)}"
                )
            client = _client_credentials(request, form)
            revoked = await context.tokens.revoke(form["token"], client, address_of(request))
        except OAuthError as refusal:
            REVOCATIONS.labels(refusal.error).inc()
            if refusal.error == "invalid_client":
                return _invalid_client(refusal.description)
            return oauth_error(refusal.error, refusal.description, refusal.status)
        except DomainError as error:
            response, reason = error_response(error)
            REVOCATIONS.labels(reason).inc()
            return response
        REVOCATIONS.labels("revoked" if revoked else "unknown_token").inc()
        # RFC 7009 §2.2: 200 whether or not the token was known (the content is ignored)
        return Response(status_code=200, headers=_NO_STORE)

    async def sign_up(request: Request) -> Response:
        if request.method != "POST":
            return plain_status(12, "accounts are opened with POST", "METHOD_NOT_ALLOWED", {"Allow": "POST"})
        try:
            if not context.signup_enabled:
                raise PermissionDenied("sign-up is closed on this cinema: ask a manager for an account")
            document = await _read_json(request, context.max_form_bytes)
            email, password = document.get("email", ""), document.get("password", "")
            if not isinstance(email, str) or not isinstance(password, str):
                raise InvalidArgument("email and password must be strings")
            user = await accounts.sign_up(context.deps, email, password)
        except DomainError as error:
            SIGN_UPS.labels(type(error).__name__).inc()
            log.info("sign-up refused", extra={"error": type(error).__name__, "reason": error.message})
            return status_response(error)
        SIGN_UPS.labels("created").inc()
        account = {"id": user.id, "username": user.username, "email": user.email, "roles": sorted(user.roles)}
        return JSONResponse(
            {"account": account}, status_code=201, headers={**_NO_STORE, "Location": f"{ACCOUNTS_PATH}/{user.id}"}
        )

    async def jwks(request: Request) -> Response:
        try:
            document = await key_use_cases.jwks(context.deps)
        except Unavailable as error:
            retry = {"Retry-After": str(max(1, round(error.retry_after_s)))}
            return oauth_error(
                "temporarily_unavailable",
                error.message,
                503,
                retry,
                reason=error.reason,
                retry_after_s=error.retry_after_s,
            )
        return JSONResponse(
            document,
            headers={"Cache-Control": f"public, max-age={context.jwks_max_age_s}"},
            media_type="application/jwk-set+json",
        )

    discovery_document = {
        "issuer": context.issuer,
        "token_endpoint": context.public_url + TOKEN_PATH,
        "revocation_endpoint": context.public_url + REVOKE_PATH,
        "jwks_uri": context.public_url + JWKS_PATH,
        "grant_types_supported": list(GRANT_TYPES),
        # "none": a public client (the web screen, the command line) signs in without a secret
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
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
        Route(REVOKE_PATH, revoke, methods=_ALL_METHODS),
        Route(ACCOUNTS_PATH, sign_up, methods=_ALL_METHODS),
        Route(JWKS_PATH, jwks, methods=["GET", "HEAD"]),
        Route(DISCOVERY_PATH, discovery, methods=["GET", "HEAD"]),
        Route(RFC8414_PATH, discovery, methods=["GET", "HEAD"]),
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        if isinstance(exc, HTTPException) and exc.status_code == 405:
            return plain_status(12, f"{request.method} is not allowed on {request.url.path}", "METHOD_NOT_ALLOWED")
        return plain_status(5, f"no such path: {request.url.path}", "NOT_FOUND")

    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})
    app.add_middleware(ObservedRequests)
    return app


class ObservedRequests:
    """One span per request (continuing the caller's W3C trace) and a request counter.

    Labels use the path only when it is one of ours, so random paths cannot blow up the series.
    """

    _KNOWN = frozenset(
        {TOKEN_PATH, REVOKE_PATH, ACCOUNTS_PATH, JWKS_PATH, DISCOVERY_PATH, RFC8414_PATH, "/healthz", "/metrics"}
    )

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
