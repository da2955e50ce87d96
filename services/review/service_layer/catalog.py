"""Review's own replica of the movie catalog, kept by the movie context's events.

A review names a movie; the review service accepts one only for a movie the catalog registered
and did not delete. It asks its replica, never the movie service: the write path of a review
depends on no other service (a stalled movie service cannot hang it), and reviews keep working
while movie is down. The replica is fed by MovieRegistered and MovieDeleted; it may lag the
catalog by the events' delay, so a review posted in the first moments after a movie was
registered can be NOT_FOUND and succeed when retried.

Why here and not only in the movie service's consumer: an event review announces about a movie
that does not exist can never be applied there, and before this check any customer could make
the movie service dead-letter one per request.
"""

from __future__ import annotations

import logging

from services.review.service_layer.ports import MovieCatalog

log = logging.getLogger(__name__)


async def on_movie_registered(movie_id: str, catalog: MovieCatalog) -> None:
    await catalog.record_registered(movie_id)
    log.info("movie %s registered: open for reviews", movie_id)


async def on_movie_deleted(movie_id: str, catalog: MovieCatalog) -> None:
    """A deleted movie takes no more reviews (its standing reviews stay readable)."""
    await catalog.record_deleted(movie_id)
    log.info("movie %s deleted: closed for reviews", movie_id)
