"""Email addresses: which ones are refused and why, how the suppression list compares them, and the
form that goes on the wire."""

from __future__ import annotations

import pytest

from engine.addresses import (
    InvalidAddress,
    address_hash,
    check_address,
    hashed_token,
    normalise,
    parse_address,
)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "is empty"),
        ("ada.example.com", "has no @"),
        ("@example.com", "has nothing before the @"),
        ("ada@", "has no domain after the @"),
        ("ada@localhost", "without a dot"),
        ("ada lovelace@example.com", "has a space before the @"),
        ("ada..l@example.com", "two dots in a row"),
        (".ada@example.com", "starts or ends with a dot"),
        ("ada(x)@example.com", "has '(' before the @"),
        ('"ada"@example.com', "quoted local part"),
        ("ada@exa mple.com", "has a space in the domain"),
        ("ada@-example.com", "starts or ends with a hyphen"),
        ("ada@example..com", "empty part in the domain"),
        ("ada@[192.0.2.1]", "IP address"),
        ("ada@192.0.2.1", "last part is a number"),
        ("a" * 65 + "@example.com", "more than 64 characters"),
        ("ada@" + "a" * 64 + ".com", "longer than 63"),
        ("ada@xn--.com", "starts or ends with a hyphen"),
        ("ada@ex\u00e4\u2603mple.com", "not a valid international name"),
    ],
)
def test_an_invalid_address_is_refused_with_the_reason(text: str, why: str) -> None:
    problem = check_address(text)
    assert problem is not None and why in problem, problem


@pytest.mark.parametrize(
    "text",
    [
        "ada@example.com",
        "Ada.Lovelace+news@Example.CO.uk",
        "o'brien@example.ie",
        "chloé@exämple.com",
        "用户@例子.广告",
        "ada@example.com.",
        "x@a-b.example",
    ],
)
def test_a_valid_address_is_accepted(text: str) -> None:
    assert check_address(text) is None


def test_the_domain_goes_on_the_wire_in_idna_form_and_a_non_ascii_local_part_needs_smtputf8() -> None:
    ida = parse_address("ida@Exämple.com")
    assert (ida.wire, ida.needs_smtputf8) == ("ida@xn--exmple-cua.com", False)
    chloe = parse_address("chloé@exämple.com")
    assert (chloe.wire, chloe.needs_smtputf8) == ("chloé@xn--exmple-cua.com", True)


def test_addresses_compare_case_insensitively_with_the_domain_normalised() -> None:
    assert normalise(" Ada@Example.COM ") == "ada@example.com"
    assert (
        normalise("CHLOÉ@EXÄMPLE.com") == normalise("chloé@xn--exmple-cua.com") == "chloé@xn--exmple-cua.com"
    )
    # the same letter composed or decomposed is the same address
    assert normalise("chlo\u0065\u0301@example.com") == normalise("chlo\u00e9@example.com")
    assert address_hash("ADA@example.com") == address_hash("ada@EXAMPLE.com")
    assert address_hash("ada@example.com") != address_hash("ada@example.org")
    with pytest.raises(InvalidAddress):
        normalise("not an address")


def test_an_erased_address_is_written_as_its_hash() -> None:
    digest = address_hash("ada@example.com")
    assert hashed_token(f"sha256:{digest}") == digest
    assert hashed_token(f"SHA256:{digest.upper()}") == digest
    assert hashed_token("sha256:123") is None and hashed_token("ada@example.com") is None
