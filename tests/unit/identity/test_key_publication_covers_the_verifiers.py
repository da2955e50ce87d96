"""The next signing key is published at least one JWKS cache period of every verifier before it
signs: the local Envoy's `cache_duration`, identity's own `max-age`, and under Istio istiod's JWKS
refresh (20 min by default, PILOT_JWT_PUB_KEY_REFRESH_INTERVAL) for the chart."""

from __future__ import annotations

from pathlib import Path

import yaml

from mesh.envoy import JwksUrl
from services.identity.settings import IdentitySettings

REPO = Path(__file__).resolve().parents[3]
ISTIOD_JWKS_REFRESH_S = 20 * 60


def test_the_default_covers_envoys_and_identitys_own_jwks_cache() -> None:
    settings = IdentitySettings()
    assert settings.key_publish_ahead_s >= JwksUrl("http://identity/.well-known/jwks.json").cache_s
    assert settings.key_publish_ahead_s >= settings.jwks_max_age_s


def test_the_chart_covers_istiods_jwks_refresh() -> None:
    values = yaml.safe_load((REPO / "helm" / "cinema" / "values.yaml").read_text())
    identity = values["services"]["identity"]["settings"]
    assert float(identity["KEY_PUBLISH_AHEAD_S"]) >= ISTIOD_JWKS_REFRESH_S
