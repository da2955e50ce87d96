"""JWKS over HTTP: loaded once, reloaded for a new `kid`, never hammered by unknown kids."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from services.kit import errors
from services.kit.auth import JwksCache, JwtVerifier, UrlJwksSource, jwks_source_from
from services.kit.testing_tokens import LocalTokenIssuer

pytestmark = pytest.mark.integration


class JwksServer:
    """A JWKS endpoint on 127.0.0.1 that counts its requests."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests += 1
                body = json.dumps(owner.document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}/.well-known/jwks.json"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def issuer() -> LocalTokenIssuer:
    return LocalTokenIssuer(kid="url-k1")


@pytest.fixture
def jwks_server(issuer: LocalTokenIssuer) -> Iterator[JwksServer]:
    server = JwksServer(issuer.jwks())
    yield server
    server.stop()


def verifier_for(issuer: LocalTokenIssuer, url: str, min_refresh_s: float) -> JwtVerifier:
    source = jwks_source_from(url)
    assert isinstance(source, UrlJwksSource)
    return JwtVerifier(JwksCache(source, min_refresh_s), issuer=issuer.issuer, audience=issuer.audience)


async def test_keys_are_fetched_once_and_refreshed_for_a_new_kid(
    issuer: LocalTokenIssuer, jwks_server: JwksServer
) -> None:
    verifier = verifier_for(issuer, jwks_server.url, min_refresh_s=0)
    for _ in range(3):
        assert (await verifier.verify(issuer.mint())).subject == "customer-1"
    assert jwks_server.requests == 1  # cached

    issuer.rotate("url-k2")
    jwks_server.document = issuer.jwks()
    assert (await verifier.verify(issuer.mint())).subject == "customer-1"
    assert jwks_server.requests == 2


async def test_unknown_kids_do_not_hammer_the_jwks_endpoint(issuer: LocalTokenIssuer, jwks_server: JwksServer) -> None:
    verifier = verifier_for(issuer, jwks_server.url, min_refresh_s=60)
    await verifier.verify(issuer.mint())
    stranger = LocalTokenIssuer(kid="someone-else")
    for _ in range(5):
        with pytest.raises(errors.Unauthenticated):
            await verifier.verify(stranger.mint())
    assert jwks_server.requests == 1


async def test_unreachable_jwks_url_is_unavailable(issuer: LocalTokenIssuer, jwks_server: JwksServer) -> None:
    url = jwks_server.url
    jwks_server.stop()
    verifier = verifier_for(issuer, url, min_refresh_s=60)
    with pytest.raises(errors.Unavailable):
        await verifier.verify(issuer.mint())
