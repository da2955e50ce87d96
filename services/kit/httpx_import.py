"""`httpx` without its command-line client, for the kit's HTTP callers (JWKS, OAuth2 tokens).

httpx's package imports its command-line client (`httpx._main`: rich, click, pygments) whenever
those happen to be installed, as they are in the development venv: 0.13 s of CPU at every start
of every service, for a client no service runs. Marking the module absent before the first
`import httpx` makes httpx define its stub `main` instead (it catches the ImportError); in a
process that has imported httpx already this changes nothing.
"""

from __future__ import annotations

import sys

sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]  # None: "not importable"

import httpx  # noqa: E402

__all__ = ["httpx"]
