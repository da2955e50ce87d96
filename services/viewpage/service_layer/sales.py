"""Use cases of the manager's sales (issue 16): one screening's, one movie's. Managers only."""

from __future__ import annotations

from dataclasses import dataclass

from services.kit import errors
from services.kit.caller import Caller, require_role
from services.viewpage.domain import sales
from services.viewpage.service_layer.ports import ReadModelStore


@dataclass(frozen=True)
class ScreeningSalesAnswer:
    screening: sales.ScreeningSales
    as_of_ms: int


@dataclass(frozen=True)
class MovieSalesAnswer:
    movie: sales.MovieSales
    as_of_ms: int


async def get_screening_sales(store: ReadModelStore, caller: Caller, screening_id: str) -> ScreeningSalesAnswer:
    require_role(caller, "manager")
    found = await store.sales_documents(screening_id=screening_id)
    if screening_id not in found.screenings:
        raise errors.NotFound("screening", screening_id, f"screening {screening_id} is not on the board")
    view = sales.screening_sales(screening_id, found.screenings[screening_id], found.reservations[screening_id])
    return ScreeningSalesAnswer(view, found.as_of_ms)


async def get_movie_sales(store: ReadModelStore, caller: Caller, movie_id: str) -> MovieSalesAnswer:
    require_role(caller, "manager")
    found = await store.sales_documents(movie_id=movie_id)
    if found.movie is None and not found.screenings:
        raise errors.NotFound("movie", movie_id, f"movie {movie_id} is not on the board")
    screenings = [
        sales.screening_sales(sid, doc, found.reservations.get(sid, [])) for sid, doc in found.screenings.items()
    ]
    return MovieSalesAnswer(sales.movie_sales(movie_id, found.movie or {}, screenings), found.as_of_ms)
