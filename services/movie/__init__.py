"""The movie service: the catalog (movies, screenings) and the review count kept from review events."""
