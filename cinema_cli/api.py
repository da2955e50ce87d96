"""The REST/JSON client of the `cinema` command: the ingress, its answers and its refusals.

REST rather than the generated gRPC clients: one HTTP client (httpx) serves the OAuth2 token
endpoint and the API alike, `--json` prints what the API said as it said it, and a REST answer
carries both an HTTP status (for the ingress' own refusals: a missing token, the rate limit, a
service down) and, from the services, a `google.rpc.Status` with the gRPC code.

Every failure becomes a `CliError` with an exit code (see EXIT_CODES) and one readable line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

OK = 0
FAILED = 1
USAGE = 2
NOT_SIGNED_IN = 3
FORBIDDEN = 4
NOT_FOUND = 5
CONFLICT = 6
UNAVAILABLE = 7
EXIT_CODES = {
    OK: "done",
    FAILED: "failed (anything else)",
    USAGE: "usage: a wrong argument or option, or a request the API refused as invalid",
    NOT_SIGNED_IN: "not signed in, the session ended, or a wrong username or password",
    FORBIDDEN: "signed in, but not allowed (e.g. a customer running `cinema admin`)",
    NOT_FOUND: "no such movie, screening or reservation",
    CONFLICT: "conflict or precondition: seats taken, a declined card, a screening that started",
    UNAVAILABLE: "the cinema cannot be reached or a service is down; try again later",
}

# gRPC status code (google.rpc.Code) -> exit code
_BY_GRPC_CODE = {
    3: USAGE,  # INVALID_ARGUMENT
    11: USAGE,  # OUT_OF_RANGE
    16: NOT_SIGNED_IN,  # UNAUTHENTICATED
    7: FORBIDDEN,  # PERMISSION_DENIED
    5: NOT_FOUND,  # NOT_FOUND
    6: CONFLICT,  # ALREADY_EXISTS
    9: CONFLICT,  # FAILED_PRECONDITION
    10: CONFLICT,  # ABORTED
    14: UNAVAILABLE,  # UNAVAILABLE
    4: UNAVAILABLE,  # DEADLINE_EXCEEDED
    8: UNAVAILABLE,  # RESOURCE_EXHAUSTED (the ingress' rate limit)
}
# HTTP status -> exit code, for answers without a google.rpc.Status (Envoy's own)
_BY_HTTP_STATUS = {
    400: USAGE,
    401: NOT_SIGNED_IN,
    403: FORBIDDEN,
    404: NOT_FOUND,
    409: CONFLICT,
    429: UNAVAILABLE,
    502: UNAVAILABLE,
    503: UNAVAILABLE,
    504: UNAVAILABLE,
}


class CliError(Exception):
    """A failure the user should read: one line, and the exit code that classifies it."""

    def __init__(self, exit_code: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.message = message


@dataclass(frozen=True)
class Issued:
    access_token: str
    expires_in: int
    refresh_token: str | None = None
    refresh_expires_in: int | None = None


def _reason(body: Any) -> str:
    """The ErrorInfo reason of a google.rpc.Status, if any (e.g. SEATS_TAKEN)."""
    for detail in body.get("details", []) if isinstance(body, dict) else []:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("google.rpc.ErrorInfo"):
            return str(detail.get("reason", ""))
    return ""


def _violations(body: Any) -> list[str]:
    out: list[str] = []
    for detail in body.get("details", []) if isinstance(body, dict) else []:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("google.rpc.BadRequest"):
            for violation in detail.get("fieldViolations", []):
                out.append(f"{violation.get('field', '?')}: {violation.get('description', '')}")
    return out


def error_of(reply: httpx.Response, *, signed_in: bool) -> CliError:
    """The CliError an API refusal means."""
    try:
        body: Any = reply.json()
    except ValueError:
        body = None
    code = body.get("code") if isinstance(body, dict) else None
    text = reply.text.strip()
    message = str(body.get("message", "")) if isinstance(body, dict) else ""
    exit_code = _BY_GRPC_CODE.get(code, 0) if isinstance(code, int) else 0
    exit_code = exit_code or _BY_HTTP_STATUS.get(reply.status_code, FAILED)
    if exit_code == NOT_SIGNED_IN:
        hint = "your session ended or the token was refused" if signed_in else "this needs you signed in"
        return CliError(NOT_SIGNED_IN, f"{hint}: run `cinema login`" + (f" ({message})" if message else ""))
    if exit_code == FORBIDDEN:
        return CliError(FORBIDDEN, f"not allowed: {message or 'your account lacks the role this needs'}")
    if reply.status_code == 429 or code == 8:
        return CliError(UNAVAILABLE, "too many requests right now (the ingress' rate limit): try again in a second")
    if not message:
        message = text[:200] if text else f"HTTP {reply.status_code}"
    violations = _violations(body)
    if violations:
        message += " (" + "; ".join(violations) + ")"
    reason = _reason(body)
    if reason and reason not in message:
        message += f" [{reason}]"
    return CliError(exit_code, message)


class Api:
    """The ingress as the command line uses it."""

    def __init__(self, base_url: str, token: str | None = None, timeout_s: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout_s, headers={"Accept": "application/json"})

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.ConnectError as exc:
            message = f"cannot reach the cinema at {self.base_url} ({exc}); is it running (`make up`)?"
            raise CliError(UNAVAILABLE, message) from None
        except httpx.TimeoutException:
            raise CliError(UNAVAILABLE, f"the cinema at {self.base_url} did not answer in time; try again") from None
        except httpx.HTTPError as exc:
            raise CliError(UNAVAILABLE, f"talking to the cinema at {self.base_url} failed: {exc}") from None

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, Any] | None = None,
        auth: bool = False,
    ) -> Any:
        """One API call; `auth` sends the saved token (public reads go without one)."""
        headers = {}
        if auth:
            if self.token is None:
                raise CliError(NOT_SIGNED_IN, "not signed in: run `cinema login` first")
            headers["Authorization"] = f"Bearer {self.token}"
        reply = self._send(
            method, path, headers=headers, params=params, content=None if body is None else json.dumps(body)
        )
        if reply.is_success:
            return reply.json() if reply.content else {}
        raise error_of(reply, signed_in=auth)

    def pages(self, path: str, key: str, *, params: dict[str, Any] | None = None, auth: bool = False) -> list[Any]:
        """Every item of a paged list (AIP-158 page tokens)."""
        items: list[Any] = []
        token = ""
        while True:
            page = self.call("GET", path, params={**(params or {}), "page_size": 100, "page_token": token}, auth=auth)
            items += page.get(key, [])
            token = page.get("nextPageToken", "")
            if not token:
                return items

    def _token_request(self, form: dict[str, str]) -> tuple[httpx.Response, Any, Issued | None]:
        """One call of the OAuth2 token endpoint: the reply, its JSON, and the tokens when issued."""
        reply = self._send("POST", "/oauth2/token", data=form)
        try:
            body: Any = reply.json()
        except ValueError:
            body = {}
        issued = _issued(body) if reply.is_success and isinstance(body, dict) and "access_token" in body else None
        return reply, body, issued

    def password_grant(self, username: str, password: str) -> Issued:
        reply, body, issued = self._token_request(
            {"grant_type": "password", "username": username, "password": password}
        )
        if issued is not None:
            return issued
        description = str(body.get("error_description", "")) if isinstance(body, dict) else ""
        if reply.status_code == 429:
            after = reply.headers.get("retry-after", "a few minutes")
            raise CliError(NOT_SIGNED_IN, f"too many failed attempts for {username} from here; try again in {after} s")
        if reply.status_code in (400, 401):
            raise CliError(NOT_SIGNED_IN, "wrong username or password")
        raise error_of(reply, signed_in=False) if not description else CliError(UNAVAILABLE, description)

    def refresh_grant(self, refresh_token: str) -> Issued:
        """The next access token (and refresh token) for a saved refresh token; NOT_SIGNED_IN when
        identity refuses it (expired, revoked, or already used by someone else)."""
        reply, _body, issued = self._token_request({"grant_type": "refresh_token", "refresh_token": refresh_token})
        if issued is not None:
            return issued
        if reply.status_code in (400, 401):
            raise CliError(NOT_SIGNED_IN, "your session has ended: run `cinema login` again")
        raise error_of(reply, signed_in=False)

    def revoke(self, refresh_token: str) -> None:
        """RFC 7009: the refresh token (and its family) is revoked at identity."""
        reply = self._send("POST", "/oauth2/revoke", data={"token": refresh_token, "token_type_hint": "refresh_token"})
        if not reply.is_success:
            raise error_of(reply, signed_in=False)

    def sign_up(self, email: str, password: str) -> dict[str, Any]:
        """A new customer account (POST /v1/accounts); the account as identity answers it."""
        account: dict[str, Any] = self.call("POST", "/v1/accounts", body={"email": email, "password": password})
        return account


def _issued(body: dict[str, Any]) -> Issued:
    refresh = body.get("refresh_token")
    refresh_in = body.get("refresh_token_expires_in")
    return Issued(
        str(body["access_token"]),
        int(body.get("expires_in", 0)),
        str(refresh) if refresh else None,
        int(refresh_in) if isinstance(refresh_in, int) else None,
    )
