"""The allowed-clients setting (oddstore.callers): names, `*`, and what is refused with a reason."""

from __future__ import annotations

import pytest

from oddstore import callers


def test_a_comma_separated_list_is_the_set_of_names_and_a_star_alone_is_any_certificate() -> None:
    assert callers.parse(" ingest, query ,") == frozenset({"ingest", "query"})
    assert callers.parse("*") is None
    assert callers.parse(["gateway"]) == frozenset({"gateway"})


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "no client name"),
        ("ingest,*", "give it alone"),
        ("gateway,localhost", "'localhost' is in every certificate"),
        ("127.0.0.1", "'127.0.0.1' is in every certificate"),
        ("in gest", "expected a certificate's name"),
    ],
)
def test_a_list_that_would_allow_more_than_it_says_or_nothing_is_refused(value: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        callers.parse(value)


def test_a_certificate_is_known_by_its_common_name_and_its_dns_names_not_by_an_empty_one() -> None:
    context = {"x509_common_name": [b""], "peer_dns": [b"scraper-7", b"localhost"], "peer_ip": [b"127.0.0.1"]}
    assert callers.names(context) == ["scraper-7", "localhost"]
    assert callers.allowed(context, frozenset({"scraper-7"}))
    assert not callers.allowed(context, frozenset({"ingest"}))
    assert not callers.allowed({}, frozenset({"ingest"}))
