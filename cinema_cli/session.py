"""The saved sign-in of the `cinema` command: one token per cinema URL, in a file only its owner reads.

`$CINEMA_CONFIG_DIR/session.json` (default `$XDG_CONFIG_HOME/cinema`, else `~/.config/cinema`),
mode 0600 in a 0700 folder, written atomically. A token is kept with the URL it came from (it is
worth nothing elsewhere), the username and roles it carries, and when it expires; with it the
refresh token identity issued at sign-in, which gets the next access token when this one ends
(each refresh replaces both), so a session lasts as long as its refresh tokens, not 15 minutes.
"""

from __future__ import annotations

import base64
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

FILE_NAME = "session.json"


def config_dir() -> Path:
    if explicit := os.environ.get("CINEMA_CONFIG_DIR"):
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "cinema"


@dataclass(frozen=True)
class Session:
    url: str
    token: str
    username: str
    roles: tuple[str, ...]
    expires_at: float
    refresh_token: str | None = None
    refresh_expires_at: float | None = None

    @property
    def expired(self) -> bool:
        return time.time() >= self.expires_at - 5

    @property
    def due_for_refresh(self) -> bool:
        """The access token ends within a minute (a command may take that long) and a refresh
        token that has not ended is at hand."""
        if self.refresh_token is None or time.time() >= (self.refresh_expires_at or 0) - 5:
            return False
        return time.time() >= self.expires_at - 60


def claims_of(token: str) -> dict[str, Any]:
    """The claims of our own token (read, not verified: the services verify it)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


def session_from_token(
    url: str, token: str, expires_in: int, refresh_token: str | None = None, refresh_expires_in: int | None = None
) -> Session:
    claims = claims_of(token)
    expires_at = float(claims.get("exp") or time.time() + expires_in)
    username = str(claims.get("preferred_username") or claims.get("sub") or "?")
    refresh_expires_at = time.time() + refresh_expires_in if refresh_token and refresh_expires_in else None
    roles = tuple(str(r) for r in claims.get("roles", []))
    return Session(url, token, username, roles, expires_at, refresh_token, refresh_expires_at)


def _path() -> Path:
    return config_dir() / FILE_NAME


def _read_all() -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(_path().read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_all(sessions: dict[str, dict[str, Any]]) -> None:
    folder = config_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = folder / f".{FILE_NAME}.{os.getpid()}"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        json.dump(sessions, file, indent=2)
    os.replace(temporary, _path())


def load(url: str) -> Session | None:
    entry = _read_all().get(url)
    if not isinstance(entry, dict):
        return None
    try:
        return Session(
            url=url,
            token=str(entry["token"]),
            username=str(entry["username"]),
            roles=tuple(entry.get("roles", ())),
            expires_at=float(entry["expires_at"]),
            refresh_token=str(entry["refresh_token"]) if entry.get("refresh_token") else None,
            refresh_expires_at=float(entry["refresh_expires_at"]) if entry.get("refresh_expires_at") else None,
        )
    except (KeyError, TypeError, ValueError):
        return None


def save(session: Session) -> Path:
    sessions = _read_all()
    entry = asdict(session)
    entry.pop("url")
    sessions[session.url] = entry
    _write_all(sessions)
    return _path()


def forget(url: str) -> bool:
    sessions = _read_all()
    if url not in sessions:
        return False
    del sessions[url]
    _write_all(sessions)
    return True
