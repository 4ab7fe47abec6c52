"""The signer's tokens are itsdangerous' own, made faster: the HTTP service verifies them as before."""

from __future__ import annotations

from itsdangerous import URLSafeTimedSerializer

from engine.delivery.tokens import Signer


def test_a_token_is_the_one_itsdangerous_makes_with_the_newest_key_and_every_key_verifies_it() -> None:
    signer = Signer(["new", "old"])
    long_url = "https://shop.example.com/" + "p" * 200  # long enough to be offered to zlib
    for purpose, payload in [
        ("unsubscribe", {"c": 1, "s": 2, "r": "cart_abandonment"}),
        ("click", {"s": 3, "c": 4, "u": long_url}),
    ]:
        token = signer.sign(purpose, payload)
        theirs = URLSafeTimedSerializer(["old", "new"], salt=f"journey.{purpose}")
        # the same second almost always; a token of the next second differs only in its time
        assert token.split(".")[0] == theirs.dumps(payload).split(".")[0]
        assert theirs.loads(token) == payload
        assert Signer(["new"]).verify(purpose, token) == payload
        assert (
            URLSafeTimedSerializer("old", salt=f"journey.{purpose}").loads(
                Signer(["old"]).sign(purpose, payload)
            )
            == payload
        )
