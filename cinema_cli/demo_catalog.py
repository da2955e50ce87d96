"""The demo catalog: three movies, and the namespace of the request ids (uuid5 of the names) that
make registering it idempotent. Product data: `cinema seed` registers it over REST, and `make up`
(scripts/stack/seed.py) over gRPC, with the same request ids."""

from __future__ import annotations

import uuid

NAMESPACE = uuid.UUID("8f3b6a52-51d6-4c57-9a43-0b6a1d2c9e11")
# (title, minutes, genres, synopsis)
MOVIES = (
    ("Arrival", 116, ["sci-fi", "drama"], "A linguist works with the military to talk to alien visitors."),
    ("Paddington 2", 103, ["family", "comedy"], "A bear, a pop-up book and a prison kitchen."),
    ("Parasite", 132, ["thriller", "drama"], "Two families, one house, and a basement nobody mentions."),
)
