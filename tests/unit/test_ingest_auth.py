"""Ingest tokens and callers: the tokens file, bearer metadata, loopback peers, and who may write what."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from oddstore import tokens
from services.ingest.auth import LOOPBACK, Authenticator, Refused, bearer, is_loopback


@pytest.mark.parametrize(
    ("peer", "local"),
    [
        ("ipv4:127.0.0.1:50051", True),
        ("ipv4:127.8.9.10:1", True),
        ("ipv6:[::1]:50051", True),
        ("ipv6:[::ffff:127.0.0.1]:50051", True),
        ("unix:/tmp/ingest.sock", True),
        ("ipv4:192.0.2.7:50051", False),
        ("ipv6:[2001:db8::1]:50051", False),
        ("ipv6:[::ffff:10.0.0.1]:50051", False),
        ("garbage", False),
    ],
)
def test_only_loopback_and_unix_socket_peers_count_as_local(peer: str, local: bool) -> None:
    assert is_loopback(peer) is local


def test_the_bearer_token_is_read_from_the_authorization_metadata_whatever_the_scheme_case() -> None:
    assert bearer([("x-other", "1"), ("authorization", "Bearer abc")]) == "abc"
    assert bearer([("authorization", "bearer  abc ")]) == "abc"
    assert bearer([("authorization", "Basic abc")]) is None
    assert bearer([("authorization", "Bearer ")]) is None
    assert bearer([]) is None


def test_a_created_token_is_found_by_its_hash_and_only_the_hash_is_stored(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "tokens.json"
    first = tokens.add(path, "sportybet-scraper", ["sportybet"])
    second = tokens.add(path, "bet9ja-scraper", ["bet9ja", "betpawa"])
    assert first.startswith(tokens.TOKEN_PREFIX) and first != second
    text = path.read_text()
    assert first not in text and second not in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    grants = tokens.load(path)
    assert grants[tokens.token_hash(first)] == tokens.Grant("sportybet-scraper", frozenset({"sportybet"}))
    assert grants[tokens.token_hash(second)].bookmakers == {"bet9ja", "betpawa"}


def test_creating_a_token_again_for_a_name_replaces_the_old_one(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    old = tokens.add(path, "scraper", ["betpawa"])
    new = tokens.add(path, "scraper", ["sportybet"])
    grants = tokens.load(path)
    assert tokens.token_hash(old) not in grants
    assert grants == {tokens.token_hash(new): tokens.Grant("scraper", frozenset({"sportybet"}))}


@pytest.mark.parametrize(
    ("content", "fault"),
    [
        ("not json", "not JSON"),
        ('{"token": []}', "expected"),
        ('{"tokens": [{"name": "a b", "sha256": "' + "0" * 64 + '", "bookmakers": ["x1"]}]}', "tokens[0].name"),
        ('{"tokens": [{"name": "a", "sha256": "zz", "bookmakers": ["x1"]}]}', "tokens[0].sha256"),
        ('{"tokens": [{"name": "a", "sha256": "' + "0" * 64 + '", "bookmakers": []}]}', "tokens[0].bookmakers"),
        ('{"tokens": [{"name": "a", "sha256": "' + "0" * 64 + '", "bookmakers": ["Bet Pawa"]}]}', "'Bet Pawa'"),
    ],
)
def test_a_malformed_tokens_file_is_refused_naming_the_entry(tmp_path: Path, content: str, fault: str) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(content)
    with pytest.raises(tokens.TokenFileError, match=str(path)) as error:
        tokens.load(path)
    assert fault in str(error.value)
    with pytest.raises(tokens.TokenFileError):
        tokens.add(path, "new", ["betpawa"])  # never overwrites what it cannot read


def test_duplicate_names_are_refused() -> None:
    entry = {"name": "a", "sha256": "0" * 64, "bookmakers": ["betpawa"]}
    with pytest.raises(tokens.TokenFileError, match="duplicate name 'a'"):
        tokens.parse(json.dumps({"tokens": [entry, {**entry, "sha256": "1" * 64}]}))


def test_with_tokens_a_call_needs_a_known_one_and_gets_its_grant() -> None:
    token = tokens.new_token()
    auth = Authenticator({tokens.token_hash(token): tokens.Grant("s", frozenset({"sportybet"}))})
    caller = auth.identify([("authorization", f"Bearer {token}")], "ipv4:192.0.2.7:1")
    assert caller.name == "s" and caller.may_write("sportybet") and not caller.may_write("betpawa")
    for metadata, reason in (([], "missing"), ([("authorization", "Bearer " + tokens.new_token())], "unknown")):
        with pytest.raises(Refused) as refused:
            auth.identify(metadata, "ipv4:127.0.0.1:1")  # loopback is no excuse once tokens are configured
        assert refused.value.reason == reason and not refused.value.authenticated


def test_without_tokens_only_a_loopback_caller_is_let_in_and_may_write_any_bookmaker() -> None:
    auth = Authenticator(None)
    assert auth.identify([], "ipv6:[::1]:1") == LOOPBACK and LOOPBACK.may_write("betpawa")
    with pytest.raises(Refused) as refused:
        auth.identify([("authorization", "Bearer whatever")], "ipv4:192.0.2.7:1")
    assert refused.value.reason == "not_loopback" and refused.value.authenticated
