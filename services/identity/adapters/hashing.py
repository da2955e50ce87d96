"""argon2id hashes of passwords and client secrets (argon2-cffi).

Hashing takes tens of milliseconds and tens of MiB on purpose, so it runs in worker threads,
at most `concurrency` at a time (memory stays bounded under a flood of sign-ins), never on the
event loop. A principal that does not exist is "verified" against a dummy hash made with the
same parameters, so a wrong username takes as long as a wrong password.
"""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError


class Argon2Hasher:
    def __init__(self, *, time_cost: int, memory_kib: int, parallelism: int, concurrency: int = 4) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, hash_len=32, salt_len=16, type=Type.ID
        )
        self._slots = asyncio.Semaphore(concurrency)
        self._dummy: str | None = None

    async def hash(self, secret: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self._hasher.hash, secret)

    async def verify(self, hashed: str, secret: str) -> bool:
        async with self._slots:
            return await asyncio.to_thread(self._verify, hashed, secret)

    def _verify(self, hashed: str, secret: str) -> bool:
        try:
            return self._hasher.verify(hashed, secret)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, hashed: str) -> bool:
        try:
            return self._hasher.check_needs_rehash(hashed)
        except (InvalidHashError, ValueError):
            return True

    async def waste_time(self, secret: str) -> None:
        if self._dummy is None:
            self._dummy = await self.hash("not a real password: a stand-in for a principal that does not exist")
        await self.verify(self._dummy, secret)
