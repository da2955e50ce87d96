"""What makes an acceptable password (NIST SP 800-63B style: length, not the username, not a
well-known one; no composition rules)."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from services.kit.errors import FieldViolation, InvalidArgument

# The handful every cracking list starts with; a real deployment would check a breach corpus.
COMMON_PASSWORDS = frozenset(
    {
        "password",
        "password1",
        "password123",
        "123456789012",
        "qwertyuiop",
        "letmein",
        "iloveyou",
        "changeme",
        "administrator",
        "welcome123",
        "cinema",
        "cinema123",
    }
)


@dataclass(frozen=True)
class PasswordPolicy:
    min_length: int = 12
    # argon2 would hash anything, but the token endpoint's form limit and a sane upper bound
    # keep one request from being arbitrarily expensive.
    max_length: int = 256

    def check(self, password: str, username: str) -> None:
        """Raise InvalidArgument (field `password`) when the password is not acceptable."""
        normalised = unicodedata.normalize("NFKC", password)
        if len(normalised) < self.min_length:
            raise _refused(f"needs at least {self.min_length} characters")
        if len(normalised) > self.max_length:
            raise _refused(f"may have at most {self.max_length} characters")
        if not normalised.strip():
            raise _refused("must not be only spaces")
        folded = normalised.casefold()
        if username and username.casefold() in folded:
            raise _refused("must not contain the username")
        if folded in COMMON_PASSWORDS or len(set(folded)) < 4:
            raise _refused("is too easy to guess")


def _refused(description: str) -> InvalidArgument:
    # Worded "the password ..." rather than "password: ...", which log redaction would blank out.
    return InvalidArgument(f"the password {description}", (FieldViolation("password", description),))
