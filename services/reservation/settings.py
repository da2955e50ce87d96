"""Settings of the reservation service, read once at start-up from `RESERVATION_*` variables.

Besides the kit's variables (`RESERVATION_GRPC_PORT`, `RESERVATION_JWKS_SOURCE`, ... see
services.kit.settings), the service reads:

- `RESERVATION_DATABASE_URL`: its PostgreSQL database.
- `RESERVATION_DB_POOL_MIN` / `RESERVATION_DB_POOL_MAX`: connection pool size.
- `RESERVATION_NATS_URL`: NATS JetStream (events in and out).
- `RESERVATION_PAYMENT_ADDRESS`: `host:port` of payment's gRPC API; locally the Envoy listener
  in front of payment, in Kubernetes the mesh service name.
- `RESERVATION_PAYMENT_DEADLINE_MS`: gRPC deadline of one call to payment (default 800). A call
  that passes it is sent again (payment finishes an authorization it started and answers the
  repeat from it), within:
- `RESERVATION_PAYMENT_WAIT_MS` (default 1500): the most CreateReservation spends asking payment
  before it answers UNAVAILABLE (retry with the same request id); the caller's own deadline
  may leave less. Below the mesh's per-try timeout of the reservation route (2 s).
- `RESERVATION_PAYMENT_OUTAGE_WINDOW_S` (default 30): the payment outage (down, restarting,
  stalled) a reservation rides out. A customer who keeps retrying with the same request id
  through an outage no longer than this gets the reservation (CONFIRMED once payment approves),
  and a reservation process that stays up settles it by itself once payment is back (its
  background authorization keeps asking, the pause between attempts at most 1 s); no sale is
  lost to it. The pending window is derived from it.
- `RESERVATION_PENDING_WINDOW_S` (default derived: the outage window plus 8.6 s with the
  defaults, 38.6 s): a PENDING reservation whose payment still has no outcome this long after its
  seats were claimed is failed (PAYMENT_NOT_COMPLETED) and its seats are released; until then the
  reconciler settles it by payment's outcome, whenever it comes. This bounds how long the seats
  of an unpaid reservation stay held (plus a reconciler round; while payment cannot be asked at
  all, until it can: an authorization it may have approved must not be left standing). Set
  explicitly, it decides the outage window instead (what it leaves after the bounds below);
  setting both inconsistently is refused.
- `RESERVATION_PAYMENT_WORK_LIMIT_S` (default 5): how long payment may keep working on an
  authorization (payment's `PAYMENT_AUTHORIZATION_LIMIT_S`; keep this at least as large). No
  authorization is sent later than the pending window minus this (and the payment deadline and
  its 0.5 s grace) after the claim, so none can still be approved when the window ends; that
  last moment is the outage window plus the recovery time (the deadline, its grace and the
  longest pause, 2.3 s with the defaults) after the claim.
- `RESERVATION_PAYMENT_TOKEN_FILE`: file holding the bearer token (a JWT with role `service`)
  sent to payment; re-read when it changes. Empty: calls go without a token.
- `RESERVATION_TOKEN_URL`, `RESERVATION_CLIENT_ID` (default `reservation`),
  `RESERVATION_CLIENT_SECRET_FILE`: when the URL is set, the token for payment comes from that
  OAuth2 token endpoint (client credentials, e.g. identity's `/oauth2/token`), cached and
  refreshed before it expires, instead of from the token file.
- `RESERVATION_RECONCILER_INTERVAL_S`: pause between two reconciler rounds.
- `RESERVATION_RECONCILER_WINDOW_S`: a PENDING reservation older than this is looked at by the
  reconciler (settled by payment's outcome); must exceed the payment deadline.
- `RESERVATION_RETRY_AFTER_S`: the retry delay told to callers with UNAVAILABLE.
- `RESERVATION_PAYMENT_CONCURRENCY` (default 16): AuthorizePayment calls one process has in
  flight at once; more wait, the oldest reservation first (after a payment outage the backlog is
  asked in the order its time runs out, at payment's pace, instead of all at once).
"""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from services.kit.settings import KitSettings
from services.reservation.service_layer.booking import outage_window_within, pending_window_for

# Reservation's own guard on top of the payment deadline (BookingDependencies.payment_grace_s).
PAYMENT_GRACE_S = 0.5


def _derive(settings: KitSettings, name: str, value: float) -> None:
    """Fill in a derived value while validating (the settings are frozen once built)."""
    object.__setattr__(settings, name, value)


class ReservationSettings(KitSettings):
    model_config = SettingsConfigDict(env_prefix="RESERVATION_", extra="ignore", frozen=True)

    service_name: str = "reservation"
    grpc_port: int = Field(default=15051, ge=0, le=65535)
    metrics_port: int = Field(default=19101, ge=0, le=65535)

    database_url: str = "postgresql://postgres:cinema-dev@127.0.0.1:15432/reservation"
    db_pool_min: int = Field(default=2, ge=1)
    db_pool_max: int = Field(default=10, ge=1)
    nats_url: str = "nats://127.0.0.1:14222"

    payment_address: str = "127.0.0.1:15052"
    payment_deadline_ms: int = Field(default=800, ge=10)
    payment_wait_ms: int = Field(default=1500, ge=10)
    payment_outage_window_s: float = Field(default=30.0, ge=0)
    # 0: derived from the outage window (see the validator).
    pending_window_s: float = Field(default=0.0, ge=0)
    payment_work_limit_s: float = Field(default=5.0, gt=0)
    payment_token_file: str = ""
    token_url: str = ""
    client_id: str = "reservation"
    client_secret_file: str = ""

    reconciler_interval_s: float = Field(default=1.0, gt=0)
    reconciler_window_s: float = Field(default=2.0, gt=0)
    reconciler_batch: int = Field(default=100, ge=1)
    retry_after_s: float = Field(default=2.0, ge=0)
    payment_concurrency: int = Field(default=16, ge=1)

    @property
    def payment_deadline_s(self) -> float:
        return self.payment_deadline_ms / 1000

    @property
    def payment_wait_s(self) -> float:
        return self.payment_wait_ms / 1000

    @model_validator(mode="after")
    def _windows(self) -> ReservationSettings:
        """Derive the pending window from the outage window, or the outage window from an
        explicit pending window; refuse the two set apart."""
        bounds = {
            "payment_deadline_s": self.payment_deadline_s,
            "payment_grace_s": PAYMENT_GRACE_S,
            "payment_work_limit_s": self.payment_work_limit_s,
        }
        needed = pending_window_for(self.payment_outage_window_s, **bounds)
        if not self.pending_window_s:
            _derive(self, "pending_window_s", round(needed, 3))
            return self
        if "payment_outage_window_s" in self.model_fields_set:
            if self.pending_window_s < needed - 1e-9:
                raise ValueError(
                    f"RESERVATION_PENDING_WINDOW_S={self.pending_window_s:g} is too short for "
                    f"RESERVATION_PAYMENT_OUTAGE_WINDOW_S={self.payment_outage_window_s:g} (needs {needed:g}); "
                    "set one of them"
                )
            return self
        _derive(self, "payment_outage_window_s", max(0.0, outage_window_within(self.pending_window_s, **bounds)))
        return self

    @model_validator(mode="after")
    def _window_exceeds_deadline(self) -> ReservationSettings:
        # A shorter window would fail reservations whose authorization is still in flight.
        if self.reconciler_window_s <= self.payment_deadline_s + PAYMENT_GRACE_S:
            raise ValueError("RESERVATION_RECONCILER_WINDOW_S must exceed the payment deadline (plus its 0.5 s grace)")
        if (
            self.pending_window_s
            <= self.payment_work_limit_s + self.payment_deadline_s + PAYMENT_GRACE_S + self.reconciler_window_s
        ):
            # Otherwise no authorization could ever be sent, or the reconciler could give up on
            # one that payment is still allowed to approve.
            raise ValueError(
                "RESERVATION_PENDING_WINDOW_S must exceed RESERVATION_PAYMENT_WORK_LIMIT_S plus the payment "
                "deadline (and its 0.5 s grace) plus RESERVATION_RECONCILER_WINDOW_S"
            )
        if self.token_url and not self.client_secret_file:
            raise ValueError("RESERVATION_TOKEN_URL needs RESERVATION_CLIENT_SECRET_FILE")
        if self.db_pool_min > self.db_pool_max:
            raise ValueError("RESERVATION_DB_POOL_MIN must not exceed RESERVATION_DB_POOL_MAX")
        return self
