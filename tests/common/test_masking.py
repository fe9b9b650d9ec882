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


def test_jdbc_passwords_are_masked_in_the_forms_errors_quote_them() -> None:
    """A password in jdbc_url_params run into another key's value by JDBC's `;` (which the
    connection does not split at), lower-cased by sslmode's reading, cut at a `;` of its own,
    %XX-encoded, or under an encoded key: every form an error quotes is masked."""
    from pgbyte_common.secrets import collect_secrets

    cases = [
        ("sslmode=require;password=HunterSecret42",
         "sslmode must be one of disable, …; got 'require;password=huntersecret42'."),
        ("connectTimeout=10;password=ab;cdSemiSecret",
         "bad value for connect_timeout: '10;password=ab;cdSemiSecret'"),
        ("targetServerType=primary;password=%68unter2secret",
         'invalid target_session_attrs value: "primary;password=hunter2secret"'),
        ("pass%77ord=Enc0dedKeySecret", "password=Enc0dedKeySecret was refused"),
    ]  # fmt: skip
    for params, message in cases:
        masked = Masker(collect_secrets({"jdbc_url_params": params})).mask(message)
        for secret in ("HunterSecret42", "huntersecret42", "cdSemiSecret", "hunter2secret",
                       "Enc0dedKeySecret"):  # fmt: skip
            assert secret not in masked, (params, masked)


def test_a_secret_quoted_by_a_repr_escaping_its_quotes_once_or_twice_is_masked() -> None:
    """A repr of a message holding a `"` writes a secret's `'` as `\\'`; a TRACE's
    internal_message is a repr of a message that already holds a repr (backslashes twice)."""
    masker = Masker(["it'sQuoteSecret", "back\\slashSecret"])
    once = repr('password=it\'sQuoteSecret;x="y"')
    assert "it\\'sQuoteSecret" in once and "QuoteSecret" not in masker.mask(once)
    twice = repr(f'bad value: {"10;password=back" + chr(92) + "slashSecret"!r} "')
    assert "slashSecret" in twice and "slashSecret" not in masker.mask(twice)


def test_a_debug_statement_is_masked_before_it_is_cut() -> None:
    """--debug cuts a long statement: masked first, a secret at the cut never shows in part."""
    import io

    from pgbyte_common import debug
    from pgbyte_common.messages import MessageWriter

    writer = MessageWriter(io.BytesIO(), Masker(["CutBoundarySecret99"]))
    debug.enable(writer)
    try:
        query = "SELECT '" + "a" * (debug.STATEMENT_CHARS - 15) + "CutBoundarySecret99'"
        text = debug._statement(None, query, ("x" * 290 + "CutBoundarySecret99",))  # type: ignore[arg-type]
    finally:
        debug.disable()
    assert "CutBound" not in text and MASK in text


def test_a_short_piece_of_a_jdbc_password_masks_no_common_word() -> None:
    """A password holding a `;` or an encoded `&` is masked whole; its short pieces (`To`, `In`)
    are no secret of their own and leave ordinary words alone."""
    from pgbyte_common.secrets import collect_secrets

    for params in ("sslpassword=To;kX9!vQ2m", "sslpassword=In%26kX9vQ2m"):
        masker = Masker(collect_secrets({"jdbc_url_params": params}))
        text = "reset this stream's state to read it whole; rows in public"
        assert masker.mask(text) == text, params
        assert "kX9" not in masker.mask(f"bad value: '{params.split('=', 1)[1]}'")


def test_a_percent_encoded_secret_is_masked() -> None:
    """A connector logging its connection URI writes the password percent-encoded, wholly or
    in part (SQLAlchemy encodes only `@:/`), in either hex case, a space as %20 or +: those
    forms were printed as they were. A text that only looks like one without any %XX (`ab+c`
    for `ab c`) is left alone."""
    masker = Masker(['pa"ss\\wörd/x y', "p@ss!w0rd/x", "ab c"])
    for uri in ("postgresql://u:pa%22ss%5Cw%C3%B6rd%2Fx%20y@h/db",
                "postgresql://u:pa%22ss%5cw%c3%b6rd/x+y@h/db",
                "password=pa%22ss%5Cw%C3%B6rd%2Fx+y&ssl=1",
                "postgresql://u:p%40ss!w0rd%2Fx@h", "p%40ss%21w0rd%2fx"):  # fmt: skip
        masked = masker.mask(uri)
        assert "w0rd" not in masked and "%B6rd" not in masked.upper(), (uri, masked)
        assert MASK in masked, (uri, masked)
    assert masker.mask("ab+c, ab%20c") == f"ab+c, {MASK}"
    assert Masker(["secret~value123"]).mask("u:secret%7Evalue123@h") == f"u:{MASK}@h"
    # short secrets: their encoded forms are as common as they are
    assert Masker(["@x", "%"]).mask("user%40xample.com, disk 100% full") == (
        "user%40xample.com, disk 100% full"
    )
