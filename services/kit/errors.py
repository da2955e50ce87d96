"""Domain errors: the typed failures use cases raise, each meaning one gRPC status.

Pure Python on purpose: domain and application code raise these without importing gRPC.
The single mapping to `google.rpc.Status` (with error details) lives in
`services.kit.grpc_errors`; nothing else translates errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request: the field path (e.g. `seats[2]`) and why."""

    field: str
    description: str


class DomainError(Exception):
    """Base of every expected failure. The message is safe to show to the caller."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(DomainError):
    """The request itself is wrong, whatever the state of the system (INVALID_ARGUMENT)."""

    def __init__(self, message: str, violations: tuple[FieldViolation, ...] = ()) -> None:
        super().__init__(message)
        self.violations = violations

    @classmethod
    def for_field(cls, field_path: str, description: str) -> InvalidArgument:
        return cls(f"{field_path}: {description}", (FieldViolation(field_path, description),))


class NotFound(DomainError):
    """The named resource does not exist, or the caller may not know that it does (NOT_FOUND)."""

    def __init__(self, resource_type: str, resource_name: str, message: str | None = None) -> None:
        super().__init__(message or f"{resource_type} {resource_name!r} not found")
        self.resource_type = resource_type
        self.resource_name = resource_name


class AlreadyExists(DomainError):
    """The resource the caller tries to create already exists (ALREADY_EXISTS)."""

    def __init__(self, resource_type: str, resource_name: str, message: str | None = None) -> None:
        super().__init__(message or f"{resource_type} {resource_name!r} already exists")
        self.resource_type = resource_type
        self.resource_name = resource_name


class FailedPrecondition(DomainError):
    """The system is not in a state where the request can be honoured (FAILED_PRECONDITION).

    `reason` is a stable UPPER_SNAKE_CASE identifier (google.rpc.ErrorInfo.reason), e.g.
    `SEAT_TAKEN`, `PAYMENT_DECLINED`; `metadata` carries the specifics.
    """

    def __init__(self, message: str, reason: str, metadata: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.metadata: dict[str, str] = dict(metadata or {})


class Unauthenticated(DomainError):
    """No valid credentials were presented (UNAUTHENTICATED)."""


class PermissionDenied(DomainError):
    """The caller is known but may not do this (PERMISSION_DENIED)."""


class Unavailable(DomainError):
    """A dependency is down or too slow; the caller should retry after `retry_after_s` (UNAVAILABLE)."""

    def __init__(self, message: str, retry_after_s: float = 1.0, reason: str = "DEPENDENCY_UNAVAILABLE") -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.reason = reason
