"""The gRPC API of the catalog: cinema.movie.v1.MovieService.

Thin: validate the request against its contract (protovalidate rules), check the caller's
role, call the use case, turn the result into protobuf. Domain errors become statuses in the
kit's error-mapping interceptor.

Who may call: reads (GetMovie, ListMovies, GetScreening, ListScreenings) are public, like a
cinema's programme; every write needs a token with role `manager` (a customer gets
PERMISSION_DENIED, a caller without a token UNAUTHENTICATED).
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

import grpc
import grpc.aio

from cinema.movie.v1 import movie_pb2 as pb
from cinema.movie.v1 import movie_pb2_grpc as pb_grpc
from services.kit.actor import Actor
from services.kit.auth import current_caller
from services.kit.caller import require_role
from services.kit.validation import validate
from services.movie.adapters.events import money_proto, seat_map_proto, timestamp
from services.movie.domain.movie import Movie, MovieDetails
from services.movie.domain.screening import Screening, ScreeningState
from services.movie.domain.values import Money, SeatMap
from services.movie.service_layer import catalog, scheduling
from services.movie.service_layer.dependencies import CatalogDependencies

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["MovieService"].full_name
PUBLIC_METHODS = tuple(
    f"/{SERVICE_NAME}/{method}" for method in ("GetMovie", "ListMovies", "GetScreening", "ListScreenings")
)
MANAGER = "manager"

Context = grpc.aio.ServicerContext[Any, Any]

_STATES = {
    ScreeningState.SCHEDULED: pb.SCREENING_STATE_SCHEDULED,
    ScreeningState.CANCELLED: pb.SCREENING_STATE_CANCELLED,
}


def manager_key(request_id: str) -> str:
    """The idempotency key of a manager's request: the same request id from two managers is two requests."""
    caller = require_role(current_caller(), MANAGER)
    return f"{caller.subject}:{request_id}" if request_id else ""


def movie_proto(movie: Movie) -> pb.Movie:
    d = movie.details
    return pb.Movie(
        id=movie.id,
        title=d.title,
        description=d.description,
        genres=list(d.genres),
        duration_minutes=d.duration_minutes,
        poster_url=d.poster_url,
        review_count=movie.review_count,
        average_rating=movie.average_rating,
        create_time=timestamp(movie.created_at),
        update_time=timestamp(movie.updated_at),
    )


def screening_proto(screening: Screening) -> pb.Screening:
    return pb.Screening(
        id=screening.id,
        movie_id=screening.movie_id,
        movie_title=screening.movie_title,
        hall=screening.hall,
        start_time=timestamp(screening.starts_at),
        seat_map=seat_map_proto(screening.seat_map),
        price=money_proto(screening.price),
        state=_STATES.get(screening.state, pb.SCREENING_STATE_UNSPECIFIED),
        create_time=timestamp(screening.created_at),
        update_time=timestamp(screening.updated_at),
    )


def details_of(movie: pb.Movie) -> MovieDetails:
    return MovieDetails(
        title=movie.title,
        description=movie.description,
        genres=tuple(movie.genres),
        duration_minutes=movie.duration_minutes,
        poster_url=movie.poster_url,
    )


class MovieServicer(pb_grpc.MovieServiceServicer):
    def __init__(self, deps: CatalogDependencies) -> None:
        self._deps = deps

    async def CreateMovie(self, request: pb.CreateMovieRequest, context: Context) -> Any:
        validate(request)
        key = manager_key(request.request_id)
        movie = await catalog.create_movie(details_of(request.movie), key, self._deps)
        return pb.CreateMovieResponse(movie=movie_proto(movie))

    async def GetMovie(self, request: pb.GetMovieRequest, context: Context) -> Any:
        validate(request)
        return pb.GetMovieResponse(movie=movie_proto(await catalog.get_movie(request.movie_id, self._deps)))

    async def ListMovies(self, request: pb.ListMoviesRequest, context: Context) -> Any:
        validate(request)
        page = await catalog.list_movies(
            request.page_size, request.page_token, request.genre, request.showing_on, self._deps
        )
        return pb.ListMoviesResponse(movies=[movie_proto(m) for m in page.movies], next_page_token=page.next_page_token)

    async def UpdateMovie(self, request: pb.UpdateMovieRequest, context: Context) -> Any:
        validate(request)  # presence, id and mask paths; the merged movie is validated by the domain
        require_role(current_caller(), MANAGER)
        m = request.movie
        values: dict[str, object] = {
            "title": m.title,
            "description": m.description,
            "genres": tuple(m.genres),
            "duration_minutes": m.duration_minutes,
            "poster_url": m.poster_url,
        }
        movie = await catalog.update_movie(m.id, values, list(request.update_mask.paths), self._deps)
        return pb.UpdateMovieResponse(movie=movie_proto(movie))

    async def DeleteMovie(self, request: pb.DeleteMovieRequest, context: Context) -> Any:
        validate(request)
        manager = require_role(current_caller(), MANAGER)
        await catalog.delete_movie(request.movie_id, self._deps, by=Actor.manager(manager.subject or ""))
        return pb.DeleteMovieResponse()

    async def ScheduleScreening(self, request: pb.ScheduleScreeningRequest, context: Context) -> Any:
        validate(request)
        key = manager_key(request.request_id)
        s = request.screening
        screening = await scheduling.schedule_screening(
            request.movie_id,
            s.hall,
            s.start_time.ToDatetime(tzinfo=UTC),
            SeatMap(s.seat_map.rows, s.seat_map.seats_per_row, tuple(s.seat_map.blocked_seats)),
            Money(s.price.minor_units, s.price.currency_code),
            key,
            self._deps,
        )
        return pb.ScheduleScreeningResponse(screening=screening_proto(screening))

    async def GetScreening(self, request: pb.GetScreeningRequest, context: Context) -> Any:
        validate(request)
        screening = await scheduling.get_screening(request.screening_id, self._deps)
        return pb.GetScreeningResponse(screening=screening_proto(screening))

    async def ListScreenings(self, request: pb.ListScreeningsRequest, context: Context) -> Any:
        validate(request)
        page = await scheduling.list_screenings(
            request.movie_id, request.page_size, request.page_token, request.show_cancelled, self._deps
        )
        return pb.ListScreeningsResponse(
            screenings=[screening_proto(s) for s in page.screenings], next_page_token=page.next_page_token
        )

    async def RescheduleScreening(self, request: pb.RescheduleScreeningRequest, context: Context) -> Any:
        validate(request)
        require_role(current_caller(), MANAGER)
        screening = await scheduling.reschedule_screening(
            request.screening_id, request.start_time.ToDatetime(tzinfo=UTC), request.hall, self._deps
        )
        return pb.RescheduleScreeningResponse(screening=screening_proto(screening))

    async def CancelScreening(self, request: pb.CancelScreeningRequest, context: Context) -> Any:
        validate(request)
        manager = require_role(current_caller(), MANAGER)
        screening = await scheduling.cancel_screening(
            request.screening_id, request.reason, self._deps, by=Actor.manager(manager.subject or "")
        )
        return pb.CancelScreeningResponse(screening=screening_proto(screening))


def register(server: grpc.aio.Server, deps: CatalogDependencies) -> list[str]:
    pb_grpc.add_MovieServiceServicer_to_server(MovieServicer(deps), server)
    return [SERVICE_NAME]
