"""Benchmark data never stays in a live catalog.

A benchmark against a running stack (`--use-running`) registers its own movies and screenings
(scripts/bench/catalog.py, scripts/bench/sellout.py), and books, cancels and reviews on them. When it ends, however it
ends, it deletes the movies it registered through the movie service's own API, as a manager
would: each deletion cancels the movie's future screenings, so their reservations are cancelled
and refunded by the system's normal paths (the customers are the run's own accounts), and the
board drops them. Then it waits until the board no longer shows any of them.

Benchmark movies are recognised by what the benchmarks write: the description "Benchmark …
of run TAG." (catalog.bench_description) and the run tag at the end of the title. `python -m scripts.bench.cleanup`
removes the leftovers of every earlier run (a run killed by SIGKILL could not clean up), and
`--tag` only one run's (and then its customer accounts, `bench-TAG-customer-N`, too: they are
deleted with identity's admin command `remove-user`, as a run's own cleanup does).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
import grpc.aio

from cinema.movie.v1 import movie_pb2, movie_pb2_grpc
from cinema.viewpage.v1 import board_pb2_grpc
from scripts.bench.auth import Metadata, remove_customers
from scripts.bench.catalog import RETRYABLE, Progress, call_with_retry, whole_board
from scripts.bench.stack import Stack
from scripts.bench.stack import channel as open_channel

_DESCRIPTION = re.compile(r"^Benchmark .+ of run (?P<tag>[\w-]+)\.$")  # catalog.bench_description
PARALLEL = 8


@dataclass(frozen=True)
class BenchMovie:
    movie_id: str
    title: str
    tag: str


def bench_tag(title: str, description: str) -> str | None:
    """The run tag of a movie seed_catalog registered, or None for any other movie."""
    found = _DESCRIPTION.match(description)
    if found is None or not title.endswith(f"({found['tag']})"):
        return None
    return found["tag"]


async def find_bench_movies(stub: movie_pb2_grpc.MovieServiceAsyncStub, manager: Metadata) -> list[BenchMovie]:
    """Every movie of the catalog that a benchmark registered (all pages of ListMovies)."""
    found: list[BenchMovie] = []
    token = ""
    while True:
        request = movie_pb2.ListMoviesRequest(page_size=100, page_token=token)
        reply = await call_with_retry(stub.ListMovies, request, manager, give_up_after_s=60)
        assert isinstance(reply, movie_pb2.ListMoviesResponse)
        for movie in reply.movies:
            tag = bench_tag(movie.title, movie.description)
            if tag is not None:
                found.append(BenchMovie(movie.id, movie.title, tag))
        token = reply.next_page_token
        if not token:
            return found


async def remove_bench_movies(
    movie_address: str,
    board_address: str,
    manager: Metadata,
    *,
    tag: str | None = None,
    timeout_s: float = 120.0,
) -> int:
    """Delete the benchmark's movies (one run's with `tag`, else every run's) and wait until the
    board shows none of them; returns how many were deleted."""
    async with (
        open_channel(movie_address) as movie_channel,
        open_channel(board_address) as board_channel,
    ):
        movies = movie_pb2_grpc.MovieServiceStub(movie_channel)
        doomed = [m for m in await find_bench_movies(movies, manager) if tag is None or m.tag == tag]
        if not doomed:
            return 0
        progress = Progress("removing the benchmark's movies", len(doomed))
        limit = asyncio.Semaphore(PARALLEL)

        async def delete(movie: BenchMovie) -> None:
            async with limit:
                try:
                    request = movie_pb2.DeleteMovieRequest(movie_id=movie.movie_id)
                    await call_with_retry(movies.DeleteMovie, request, manager, give_up_after_s=60)
                except grpc.aio.AioRpcError as err:
                    if err.code() != grpc.StatusCode.NOT_FOUND:  # NOT_FOUND: already gone
                        progress.step(ok=False)
                        raise
            progress.step()

        await asyncio.gather(*(delete(m) for m in doomed))
        await _wait_until_off_the_board(
            board_pb2_grpc.BoardServiceStub(board_channel), {m.movie_id for m in doomed}, timeout_s
        )
        return len(doomed)


async def _wait_until_off_the_board(
    board: board_pb2_grpc.BoardServiceAsyncStub, movie_ids: set[str], timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    shown = set(movie_ids)
    while time.monotonic() < deadline:
        try:
            shown = {m.movie_id for m in await whole_board(board)} & movie_ids
        except grpc.aio.AioRpcError as err:
            if err.code() not in RETRYABLE:
                raise
        if not shown:
            print(f"  the board no longer shows the {len(movie_ids)} benchmark movies", flush=True)
            return
        await asyncio.sleep(0.3)
    raise RuntimeError(f"{len(shown)} deleted benchmark movies are still on the board after {timeout_s:.0f} s")


def manager_metadata(stack: Stack) -> Metadata:
    """A fresh token of the demo manager (a long run outlives the tokens it started with)."""
    from scripts.stack import edge

    token_url = stack.store_urls["identity"].rstrip("/") + "/oauth2/token"
    return (("authorization", f"Bearer {edge.password_token(token_url, *edge.DEMO_MANAGER)}"),)


async def remove_run_data_async(stack: Stack, tag: str | None) -> int:
    """What a run against the running stack registered (`tag`), or every run's, removed; never raises
    (the run's own result matters more), says what it could not do."""
    try:
        manager = await asyncio.to_thread(manager_metadata, stack)
        removed = await remove_bench_movies(
            stack.address("movie", "direct"), stack.address("viewpage", "direct"), manager, tag=tag
        )
        if tag is not None:
            report = await asyncio.to_thread(remove_customers, stack.data_dir, stack.store_urls, tag)
            print(f"  the run's customer accounts: {report}", flush=True)
        return removed
    except Exception as exc:  # reported, with the command that finishes the job
        print(
            f"could not remove the benchmark's movies ({type(exc).__name__}: {exc}); "
            f"run: python -m scripts.bench.cleanup" + (f" --tag {tag}" if tag else ""),
            file=sys.stderr,
            flush=True,
        )
        return 0


def remove_run_data(stack: Stack, tag: str | None) -> int:
    """remove_run_data_async from synchronous code."""
    return asyncio.run(remove_run_data_async(stack, tag))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.bench.cleanup",
        description="Delete the movies (and so the screenings, reservations and board entries) that "
        "benchmark runs registered in the stack `make up` runs.",
    )
    parser.add_argument("--tag", help="only the movies of this run (its tag, e.g. 20261203T075957)")
    args = parser.parse_args(argv)
    from scripts.bench import stack as stack_mod

    stack = stack_mod.describe(None)
    try:
        stack_mod.use_running(stack)
    except RuntimeError as exc:
        print(f"cleanup: {exc}", file=sys.stderr)
        return 1
    removed = asyncio.run(
        remove_bench_movies(
            stack.address("movie", "direct"),
            stack.address("viewpage", "direct"),
            manager_metadata(stack),
            tag=args.tag,
        )
    )
    print(f"removed {removed} benchmark movies" if removed else "no benchmark movies in the catalog")
    if args.tag:
        print(f"the run's customer accounts: {remove_customers(stack.data_dir, stack.store_urls, args.tag)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
