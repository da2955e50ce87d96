"""The review service: customer reviews of movies (rating 1..5, text), on MongoDB."""
