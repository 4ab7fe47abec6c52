"""Email addresses: which ones ingest accepts, how the suppression list compares them, and the form
that goes on the wire.

An address is `local@domain`. The domain may be internationalised (`exämple.com`): on the wire it
is IDNA-encoded (`xn--exmple-cua.com`), which every mail server takes. A local part with non-ASCII
characters (`chloé@…`) can only travel through a server that offers SMTPUTF8 (RFC 6531).

The suppression list compares addresses case-insensitively with the domain in its IDNA form, and
keys them by the SHA-256 of that normalised form, so that an erased customer's address can stay
suppressed without being stored.
"""

from __future__ import annotations

import hashlib
import string
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import idna

#: RFC 5321's limits, in octets: the whole path, the local part, a domain label, the domain
MAX_LENGTH = 254
MAX_LOCAL = 64
MAX_LABEL = 63
MAX_DOMAIN = 253

#: what a dot-atom local part may hold besides letters and digits (RFC 5322 atext)
_ATEXT = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~")
_LDH = frozenset(string.ascii_letters + string.digits + "-")
#: an erased address in the suppression list and its export: `sha256:` and the hash
HASH_PREFIX = "sha256:"


class InvalidAddress(ValueError):
    """Not a usable email address; the message says why, for a person."""


@dataclass(frozen=True)
class Address:
    """A valid address, split: the local part as given, the domain lower-cased and in IDNA form."""

    local: str
    #: the domain as given, lower-cased (Unicode where it was)
    domain: str
    #: the domain in ASCII (IDNA A-labels): what goes on the wire
    ascii_domain: str

    @property
    def needs_smtputf8(self) -> bool:
        """A non-ASCII local part can only be sent to a server that offers SMTPUTF8."""
        return not self.local.isascii()

    @property
    def wire(self) -> str:
        """The address as it goes into the SMTP envelope and the To header."""
        return f"{self.local}@{self.ascii_domain}"

    @property
    def normalised(self) -> str:
        """What the suppression list compares: case-insensitive, the domain in IDNA form."""
        return f"{unicodedata.normalize('NFC', self.local).lower()}@{self.ascii_domain}"


def _local_problem(local: str) -> str | None:
    if not local:
        return "has nothing before the @"
    if local.startswith('"'):
        return "has a quoted local part, which Journey does not send to"
    if len(local.encode("utf-8")) > MAX_LOCAL:
        return f"has more than {MAX_LOCAL} characters before the @"
    if local.startswith(".") or local.endswith("."):
        return "starts or ends with a dot before the @"
    if ".." in local:
        return "has two dots in a row"
    for ch in local:
        if ch in _ATEXT or ch == ".":
            continue
        if ch.isascii() or ch.isspace() or unicodedata.category(ch).startswith(("C", "Z")):
            return f"has {_shown(ch)} before the @, which an address cannot hold"
    return None


def _shown(ch: str) -> str:
    if ch == " ":
        return "a space"
    if ch.isprintable() and not ch.isspace():
        return f"'{ch}'"
    return f"the character U+{ord(ch):04X}"


def _ascii_domain(domain: str) -> str:
    """The domain in IDNA form, lower-cased; InvalidAddress saying what is wrong with it."""
    if not domain:
        raise InvalidAddress("has no domain after the @")
    if domain.startswith("["):
        raise InvalidAddress("has an IP address for a domain, which Journey does not send to")
    if domain.endswith("."):
        domain = domain[:-1]
    labels = domain.split(".")
    if len(labels) < 2:
        raise InvalidAddress(f"has the domain '{domain}' without a dot: a domain looks like example.com")
    if domain.isascii():
        ascii_domain = domain.lower()
    else:
        try:
            ascii_domain = idna.encode(domain, uts46=True).decode("ascii").lower()
        except idna.IDNAError as exc:
            raise InvalidAddress(
                f"has the domain '{domain}', which is not a valid international name ({exc})"
            ) from None
        labels = ascii_domain.split(".")
    for label in labels:
        if not label:
            raise InvalidAddress(f"has an empty part in the domain '{domain}' (two dots in a row?)")
        if len(label) > MAX_LABEL:
            raise InvalidAddress(f"has a domain part longer than {MAX_LABEL} characters")
        bad = next((ch for ch in label if ch not in _LDH), None)
        if bad is not None:
            raise InvalidAddress(f"has {_shown(bad)} in the domain '{domain}', which a domain cannot hold")
        if label.startswith("-") or label.endswith("-"):
            raise InvalidAddress(f"has a part of the domain '{domain}' that starts or ends with a hyphen")
    if labels[-1].isdigit():
        raise InvalidAddress(f"has the domain '{domain}', whose last part is a number")
    if len(ascii_domain) > MAX_DOMAIN:
        raise InvalidAddress(f"has a domain longer than {MAX_DOMAIN} characters")
    return ascii_domain


def parse_address(text: object) -> Address:
    """Split and check an address; InvalidAddress with the reason when it is not one."""
    if not isinstance(text, str):
        raise InvalidAddress("is not a string")
    return _parse(text)


@lru_cache(maxsize=4096)
def _parse(text: str) -> Address:
    """parse_address of a string, remembered: a worker parses each address of a batch twice (its
    suppression-list hash when the batch loads, its envelope when the message is built). An
    address that is not one raises again each time (exceptions are not cached)."""
    value = text.strip()
    if not value:
        raise InvalidAddress("is empty")
    if "@" not in value:
        raise InvalidAddress("has no @")
    local, _, domain = value.rpartition("@")
    problem = _local_problem(local)
    if problem is not None:
        raise InvalidAddress(problem)
    ascii_domain = _ascii_domain(domain)
    address = Address(local, domain.lower().rstrip("."), ascii_domain)
    if len(address.wire.encode("utf-8")) > MAX_LENGTH:
        raise InvalidAddress(f"is longer than {MAX_LENGTH} characters")
    return address


def check_address(text: object) -> str | None:
    """None when `text` is a valid address, else why not."""
    try:
        parse_address(text)
    except InvalidAddress as exc:
        return str(exc)
    return None


def normalise(text: str) -> str:
    """The form the suppression list compares (InvalidAddress when it is not an address)."""
    return parse_address(text).normalised


def hash_normalised(normalised: str) -> str:
    return hashlib.sha256(normalised.encode("utf-8")).hexdigest()


def address_hash(text: str) -> str:
    """The suppression list's key for an address: SHA-256 of its normalised form, in hex."""
    return hash_normalised(normalise(text))


def hash_of(text: str | None) -> str | None:
    """The key of a stored address, or None for none or one that is not an address (an old row)."""
    if not text:
        return None
    try:
        return address_hash(text)
    except InvalidAddress:
        return None


def hashed_token(text: str) -> str | None:
    """The hash of an erased address written as `sha256:HEX` (the export's form), else None."""
    value = text.strip().lower()
    if not value.startswith(HASH_PREFIX):
        return None
    digest = value[len(HASH_PREFIX) :]
    if len(digest) != 64 or any(ch not in "0123456789abcdef" for ch in digest):
        return None
    return digest
