"""The review-count rule, keyed by review id (the store applies the same transitions)."""

from __future__ import annotations

from services.movie.domain.reviews import Outcome, ReviewLedger, valid_review_id


def test_three_posted_one_deleted_then_everything_redelivered() -> None:
    ledger = ReviewLedger()
    for rid, rating in (("r1", 5), ("r2", 3), ("r3", 4)):
        assert ledger.posted(rid, rating) is Outcome.COUNTED
    assert ledger.count == 3
    assert ledger.deleted("r2") is Outcome.UNCOUNTED
    assert (ledger.count, ledger.average) == (2, 4.5)
    for rid, rating in (("r1", 5), ("r2", 3), ("r3", 4)):
        assert ledger.posted(rid, rating) is Outcome.UNCHANGED
    assert ledger.deleted("r2") is Outcome.UNCHANGED
    assert (ledger.count, ledger.rating_sum) == (2, 9)


def test_delete_before_post_leaves_a_tombstone() -> None:
    ledger = ReviewLedger()
    assert ledger.deleted("r1") is Outcome.TOMBSTONED
    assert ledger.count == 0
    assert ledger.posted("r1", 5) is Outcome.UNCHANGED  # the late post is ignored
    assert (ledger.count, ledger.rating_sum) == (0, 0)


def test_review_ids_must_be_plain_tokens() -> None:
    assert valid_review_id("0f8c6a3e-9b1d-4c3e-8f00-123456789abc")
    for bad in ("", "a.b", "$x", "a b", "x" * 65):
        assert not valid_review_id(bad)
