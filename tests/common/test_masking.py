"""The secret masker: every secret goes, and a very short one only where it stands apart."""

from __future__ import annotations

from pgbyte_common.secrets import MASK, Masker


def test_a_short_secret_is_masked_where_it_stands_apart_not_inside_words() -> None:
    """A 1-3 character password made every message unreadable ("une****pected end of data",
    "no inde**** starts with...", a table curx shown as cur****); where it appears as a value
    — quoted, after '=' or ':', alone — it is still masked."""
    masker = Masker(["x"])
    text = 'unexpected end; index on curx; password=x&ssl=1; {"password": "x"}; pg:x@host; x'
    assert masker.mask(text) == (
        f'unexpected end; index on curx; password={MASK}&ssl=1; {{"password": "{MASK}"}}; '
        f"pg:{MASK}@host; {MASK}"
    )
    assert Masker(["pw1"]).mask("pw12 pw1 pw1x (pw1)") == f"pw12 {MASK} pw1x ({MASK})"


def test_a_longer_secret_is_masked_everywhere_even_inside_words() -> None:
    masker = Masker(["s3cr3t-pw", "abcd"])
    assert masker.mask("xs3cr3t-pwx and abcdef") == f"x{MASK}x and {MASK}ef"
