"""Settings come from the environment once, with safe defaults and a per-service prefix."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsConfigDict

from services.kit.settings import KitSettings


class ReservationSettings(KitSettings):
    model_config = SettingsConfigDict(env_prefix="RESERVATION_")

    database_url: str = "postgresql://127.0.0.1/reservation"


def test_defaults_are_safe(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = KitSettings()
    assert settings.grpc_host == "127.0.0.1"
    assert settings.metrics_host == "127.0.0.1"
    assert settings.otlp_endpoint == ""
    assert settings.jwt_algorithms == ("RS256", "ES256", "EdDSA")


def test_a_service_reads_its_own_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESERVATION_GRPC_PORT", "7001")
    monkeypatch.setenv("RESERVATION_DATABASE_URL", "postgresql://db/r")
    monkeypatch.setenv("RESERVATION_JWT_ALGORITHMS", "ES256, RS256")
    monkeypatch.setenv("RESERVATION_LOG_LEVEL", "debug")
    monkeypatch.setenv("CINEMA_GRPC_PORT", "9999")
    settings = ReservationSettings()
    assert settings.grpc_port == 7001
    assert settings.database_url == "postgresql://db/r"
    assert settings.jwt_algorithms == ("ES256", "RS256")
    assert settings.log_level == "DEBUG"


@pytest.mark.parametrize("algorithms", ["none", "HS256", "RS256,HS512", ""])
def test_symmetric_or_unsigned_algorithms_are_refused(monkeypatch: pytest.MonkeyPatch, algorithms: str) -> None:
    monkeypatch.setenv("CINEMA_JWT_ALGORITHMS", algorithms)
    with pytest.raises(ValidationError):
        KitSettings()
