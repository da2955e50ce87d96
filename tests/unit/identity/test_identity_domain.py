"""The identity domain rules: usernames and roles, password policy, claims and scope, key
rotation and publication, sign-in throttling."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from services.identity.domain.keys import KeyPolicy, SigningKeyInfo, new_kid
from services.identity.domain.model import (
    Client,
    Principal,
    Role,
    User,
    normalise_email,
    normalise_username,
    parse_roles,
)
from services.identity.domain.passwords import PasswordPolicy
from services.identity.domain.refresh import RefreshPolicy, Verdict, narrowed_scope, refresh_token_digest
from services.identity.domain.throttling import FailedAttempts, ThrottlePolicy, throttle_key
from services.identity.domain.tokens import TokenPolicy, access_token_claims, granted_roles, parse_scope
from services.identity.service_layer.accounts import DEMO_USERS
from services.kit.errors import InvalidArgument

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
POLICY = TokenPolicy(issuer="http://127.0.0.1:18081", audience="cinema", user_ttl_s=900, client_ttl_s=3600)


# --- usernames and roles ------------------------------------------------------------------------


def test_usernames_are_case_insensitive_and_restricted() -> None:
    assert normalise_username("  Demo-Customer ") == "demo-customer"
    assert normalise_username("ada.lovelace+films@example.test") == "ada.lovelace+films@example.test"
    for bad in ("ab", "", "-starts-with-dash", "has space", "x" * 65, "semi;colon", "ünïcode"):
        with pytest.raises(InvalidArgument) as raised:
            normalise_username(bad)
        assert raised.value.violations[0].field == "username"


def test_roles_are_the_three_known_ones() -> None:
    assert parse_roles(["Customer", "manager"]) == {Role.CUSTOMER, Role.MANAGER}
    with pytest.raises(InvalidArgument, match="unknown role 'admin'"):
        parse_roles(["admin"])
    with pytest.raises(InvalidArgument, match="at least one role"):
        parse_roles([])


# --- passwords ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("password", "username", "reason"),
    [
        ("short-pass", "ada", "at least 12"),
        ("x" * 257, "ada", "at most 256"),
        ("            ", "ada", "only spaces"),
        ("my-name-is-ada-lovelace", "ada-lovelace", "username"),
        ("MY-NAME-IS-ADA-LOVELACE", "ada-lovelace", "username"),
        ("password123", "ada", "at least 12"),
        ("qwertyuiop12", "ada", None),
        ("aaaaaaaaaaaaaaaa", "ada", "too easy"),
        ("abababababababab", "ada", "too easy"),
        ("administrator", "ada", "too easy"),
    ],
)
def test_password_policy(password: str, username: str, reason: str | None) -> None:
    policy = PasswordPolicy()
    if reason is None:
        policy.check(password, username)
        return
    with pytest.raises(InvalidArgument, match=reason) as raised:
        policy.check(password, username)
    assert raised.value.violations[0].field == "password"
    assert "password:" not in raised.value.message  # log redaction would blank "password: ..."


def test_the_documented_demo_passwords_pass_the_policy() -> None:
    for demo in DEMO_USERS:
        PasswordPolicy().check(demo.password, demo.username)


def test_length_counts_characters_after_unicode_normalisation() -> None:
    full_width = "".join(chr(0xFF41 + ord(c) - ord("a")) for c in "fullwidthpass")
    PasswordPolicy().check(full_width, "ada")  # 13 full-width letters: 13 characters, not bytes
    with pytest.raises(InvalidArgument):
        PasswordPolicy().check("é" * 11, "ada")


# --- claims and scope ---------------------------------------------------------------------------

ALICE = User(
    id="5a1e0000-0000-4000-8000-000000000001",
    username="alice",
    password_hash="h",
    roles=frozenset({Role.CUSTOMER, Role.MANAGER}),
    email="alice@example.test",
)
RESERVATION = Client(client_id="reservation", secret_hash="h", roles=frozenset({Role.SERVICE}))


def test_claims_of_a_person() -> None:
    claims = access_token_claims(Principal.of_user(ALICE), POLICY, issued_at=1_000, token_id="j-1")
    assert claims == {
        "iss": "http://127.0.0.1:18081",
        "aud": "cinema",
        "sub": ALICE.id,
        "roles": ["customer", "manager"],
        "iat": 1_000,
        "nbf": 1_000,
        "exp": 1_900,
        "jti": "j-1",
        "preferred_username": "alice",
        "email": "alice@example.test",
    }


def test_claims_of_a_client_live_longer_and_name_it() -> None:
    claims = access_token_claims(Principal.of_client(RESERVATION), POLICY, issued_at=1_000, token_id="j-2")
    assert claims["sub"] == claims["client_id"] == "reservation"
    assert claims["roles"] == ["service"]
    assert claims["exp"] == 4_600
    assert "preferred_username" not in claims and "email" not in claims and "scope" not in claims


def test_scope_narrows_roles_and_cannot_widen_them() -> None:
    principal = Principal.of_user(ALICE)
    requested = parse_scope("customer")
    claims = access_token_claims(principal, POLICY, issued_at=0, token_id="j", requested_scope=requested)
    assert claims["roles"] == ["customer"] and claims["scope"] == "customer"
    assert granted_roles(principal, parse_scope("manager  customer")) == {Role.CUSTOMER, Role.MANAGER}
    assert parse_scope("") is None and parse_scope(None) is None and parse_scope("   ") is None
    with pytest.raises(InvalidArgument) as beyond:
        granted_roles(principal, parse_scope("service"))
    assert beyond.value.violations[0].field == "scope"
    with pytest.raises(InvalidArgument, match="unknown scope 'openid'"):
        parse_scope("customer openid")


# --- keys ---------------------------------------------------------------------------------------

KEYS = KeyPolicy(
    rotation_period=timedelta(days=30),
    key_cache=timedelta(seconds=5),
    longest_token_ttl=timedelta(hours=1),
    verifier_leeway=timedelta(seconds=60),
)


def key(kid: str, created: datetime, retired: datetime | None = None) -> SigningKeyInfo:
    return SigningKeyInfo(
        kid=kid,
        algorithm="RS256",
        created_at=created,
        retired_at=retired,
        verify_until=KEYS.verify_until(retired) if retired else None,
    )


def test_rotation_is_due_without_a_key_or_when_the_key_is_old() -> None:
    assert KEYS.rotation_due(None, T0)
    assert not KEYS.rotation_due(key("a", T0), T0 + timedelta(days=29, hours=23))
    assert KEYS.rotation_due(key("a", T0), T0 + timedelta(days=30))


def test_a_retired_key_is_published_until_its_last_token_cannot_be_valid() -> None:
    # a replica may sign with the old key for key_cache after the rotation; that token lives an
    # hour; verifiers accept it for leeway more
    assert KEYS.verify_until(T0) == T0 + timedelta(hours=1, seconds=65)
    old = key("old", T0 - timedelta(days=30), retired=T0)
    older = key("older", T0 - timedelta(days=60), retired=T0 - timedelta(days=30))
    current = key("current", T0)
    keys = [older, old, current]
    assert [k.kid for k in KEYS.published(keys, T0 + timedelta(minutes=30))] == ["current", "old"]
    assert [k.kid for k in KEYS.published(keys, T0 + timedelta(hours=1, seconds=64))] == ["current", "old"]
    assert [k.kid for k in KEYS.published(keys, T0 + timedelta(hours=1, seconds=65))] == ["current"]
    assert [k.kid for k in KEYS.expired(keys, T0 + timedelta(minutes=30))] == ["older"]
    assert [k.kid for k in KEYS.expired(keys, T0 + timedelta(hours=2))] == ["older", "old"]
    assert current.is_active and not old.is_active


def test_the_next_key_signs_one_cache_period_after_it_is_published() -> None:
    policy = replace(KEYS, publish_ahead=timedelta(minutes=2))
    assert policy.activation_of_next(None, T0) == T0  # the first key signs at once
    current = key("current", T0 - timedelta(days=30))
    assert policy.activation_of_next(current, T0) == T0 + timedelta(minutes=2)
    assert policy.activation_of_next(current, T0, immediately=True) == T0
    switch = T0 + timedelta(minutes=2)
    retiring = replace(current, retired_at=switch, verify_until=policy.verify_until(switch))
    pending = SigningKeyInfo("next", "RS256", created_at=T0, activates_at=switch)
    # before the switch the old key signs and both are published; after it, only the new one signs
    assert retiring.signs_at(T0 + timedelta(minutes=1)) and not pending.signs_at(T0 + timedelta(minutes=1))
    assert pending.signs_at(switch) and not retiring.signs_at(switch)
    assert [k.kid for k in policy.published([retiring, pending], T0)] == ["next", "current"]
    # a key waiting for its activation is never "due" for another rotation
    assert not policy.rotation_due(pending, T0 + timedelta(minutes=1))
    assert policy.rotation_due(pending, switch + timedelta(days=30))


def test_kids_are_readable_and_unique() -> None:
    assert new_kid(T0, "3f9a1c2b") == "20261124T100000Z-3f9a1c2b"


# --- throttling ---------------------------------------------------------------------------------

THROTTLE = ThrottlePolicy(
    threshold=3, window=timedelta(minutes=15), base_lockout=timedelta(seconds=30), max_lockout=timedelta(minutes=4)
)


def test_lockout_after_threshold_failures_then_exponential_backoff_up_to_the_maximum() -> None:
    record = None
    now = T0
    for _ in range(3):
        assert THROTTLE.locked_for(record, now) is None
        record = THROTTLE.after_failure(record, now)
        now += timedelta(seconds=1)
    assert record == FailedAttempts(3, T0 + timedelta(seconds=2), T0 + timedelta(seconds=32))
    assert THROTTLE.locked_for(record, T0 + timedelta(seconds=12)) == 20
    # every failure after a lockout ends doubles the next one: 60 s, 120 s, 240 s, then 240 s (the maximum)
    lockouts = []
    for _ in range(4):
        assert record is not None and record.locked_until is not None
        now = record.locked_until
        assert THROTTLE.locked_for(record, now) is None
        record = THROTTLE.after_failure(record, now)
        assert record.locked_until is not None
        lockouts.append((record.locked_until - now).total_seconds())
    assert lockouts == [60, 120, 240, 240]


def test_the_count_starts_again_after_a_quiet_window_measured_from_the_end_of_the_lockout() -> None:
    record = FailedAttempts(5, T0, T0 + timedelta(minutes=4))
    # 14 minutes after the lockout ended: still counting (the next failure locks for longer)
    later = THROTTLE.after_failure(record, T0 + timedelta(minutes=4 + 14))
    assert later.failures == 6 and later.locked_until is not None
    # 15 minutes of quiet after it ended: a fresh start
    fresh = THROTTLE.after_failure(record, T0 + timedelta(minutes=4 + 15))
    assert fresh == FailedAttempts(1, T0 + timedelta(minutes=19), None)


def test_failures_spread_beyond_the_window_never_lock() -> None:
    record = None
    for step in range(10):
        record = THROTTLE.after_failure(record, T0 + timedelta(minutes=16 * step))
        assert record.locked_until is None
    assert record is not None and record.failures == 1


def test_stale_records_can_be_forgotten() -> None:
    record = FailedAttempts(3, T0, T0 + timedelta(minutes=10))
    assert not THROTTLE.forgettable(record, T0 + timedelta(minutes=6))  # still locked
    assert not THROTTLE.forgettable(record, T0 + timedelta(minutes=24))  # quiet for 14 min only
    assert THROTTLE.forgettable(record, T0 + timedelta(minutes=25))
    assert not THROTTLE.forgettable(FailedAttempts(1, T0), T0 + timedelta(minutes=14))
    assert THROTTLE.stale_before(T0) == T0 - timedelta(minutes=15)


def test_the_throttle_key_names_the_account_and_the_address() -> None:
    assert throttle_key("user:ada", "203.0.113.7") == "user:ada|203.0.113.7"
    assert throttle_key("user:ada", "203.0.113.7") != throttle_key("user:ada", "198.51.100.1")


# --- refresh tokens -----------------------------------------------------------------------------

REFRESH = RefreshPolicy(ttl=timedelta(days=14), family_ttl=timedelta(days=30))


def test_a_family_never_outlives_its_sign_in() -> None:
    first = REFRESH.first("t1", "f1", "u1", None, None, T0)
    assert first.expires_at == T0 + timedelta(days=14) and first.family_expires_at == T0 + timedelta(days=30)
    later = REFRESH.successor(first, "t2", None, T0 + timedelta(days=20))
    assert later.family_id == "f1" and later.user_id == "u1"
    assert later.expires_at == T0 + timedelta(days=30)  # not day 34
    assert REFRESH.verdict(first, T0 + timedelta(days=1)) is Verdict.VALID
    assert REFRESH.verdict(first, T0 + timedelta(days=14)) is Verdict.EXPIRED
    assert REFRESH.verdict(replace(first, used_at=T0), T0) is Verdict.SPENT
    assert REFRESH.verdict(replace(first, used_at=T0, revoked_at=T0), T0) is Verdict.REVOKED


def test_a_refresh_may_narrow_the_scope_never_widen_it() -> None:
    assert narrowed_scope(None, None) is None
    assert narrowed_scope(frozenset({"customer"}), None) == frozenset({"customer"})
    assert narrowed_scope(None, frozenset({"manager"})) == frozenset({"manager"})
    with pytest.raises(ValueError, match="manager"):
        narrowed_scope(frozenset({"customer"}), frozenset({"customer", "manager"}))
    assert len(refresh_token_digest("x")) == 32 and refresh_token_digest("x") != refresh_token_digest("y")


# --- e-mail addresses ---------------------------------------------------------------------------


def test_email_addresses_are_lower_cased_and_plain() -> None:
    assert normalise_email("  Ada.Lovelace+Films@Example.COM ") == "ada.lovelace+films@example.com"
    for bad in ("", "ada", "ada@example", "ada@@example.com", "a..b@example.com", "ada lovelace@example.com",
                "x" * 60 + "@example.com", "<ada@example.com>"):  # fmt: skip
        with pytest.raises(InvalidArgument) as raised:
            normalise_email(bad)
        assert raised.value.violations[0].field == "email"
