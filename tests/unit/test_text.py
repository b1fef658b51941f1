"""The one rule for strings that may reach PostgreSQL text, checked against UTF-8 itself
(the integration property test checks it against PostgreSQL)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from oddstore.text import unstorable


@given(st.text(alphabet=st.characters(codec=None, exclude_categories=())))
def test_a_string_is_storable_exactly_when_it_has_no_nul_and_encodes_as_utf8(value: str) -> None:
    try:
        value.encode("utf-8")
        encodable = True
    except UnicodeEncodeError:
        encodable = False
    assert (unstorable(value) is None) == (encodable and "\x00" not in value)


def test_the_reason_names_the_character_and_its_position() -> None:
    assert unstorable("Arsenal\x00") == "contains a NUL character (U+0000) at position 7"
    assert unstorable("Über\ud83d") == "contains a lone surrogate (U+D83D) at position 4"
    assert unstorable("مباراة 🏟 Ñandú\t\n") is None
