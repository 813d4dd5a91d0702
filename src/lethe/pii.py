"""PII detectors shared by `lethe scan` (column values) and `lethe.logging` (log lines).

Pure functions over strings, imported by the lowest layers, so they use the standard
library only. They run inside logging filters, on every record, which shapes them:

* every pattern is compiled once, and none can backtrack badly: candidates are runs of
  one character class, anchored by a look-behind to the start of a run, and the fine
  checks (digit counts, Luhn, mod-97, entropy, `ipaddress`) run in Python on the few
  candidates found;
* each detector has a cheap prefilter before its regex (`'@' in text`, enough digits
  counted with `str.count`, a token prefix, a word of 32+ characters), so a line that
  cannot hold a kind costs a few C-level scans.

A detector finds spans; `mask` rewrites them so a log line keeps its shape
(`p***@example.com`, `**** **** **** 4242`) without the value. Names have no span
detector (too many false positives in free text): `looks_like_name` judges a whole
column value, helped by the column's name.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

EMAIL = "email"
PHONE = "phone"
NAME = "name"
IP = "ip"
CARD = "card"
IBAN = "iban"
TOKEN = "token"
CREDENTIAL = "credential"  # a stored password hash: whole column values only

KINDS = (EMAIL, PHONE, NAME, IP, CARD, IBAN, TOKEN, CREDENTIAL)
SPAN_KINDS = (TOKEN, EMAIL, IBAN, CARD, PHONE, IP)  # detectable inside free text
LOG_KINDS = (TOKEN, EMAIL, IBAN, CARD, PHONE)  # masked in logs by default


@dataclass(frozen=True, order=True)
class Span:
    start: int
    end: int
    kind: str


# -- emails ------------------------------------------------------------------------------
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}\.)+[A-Za-z]{2,24}(?![A-Za-z0-9-])")


def _emails(text: str) -> Iterator[tuple[int, int]]:
    if "@" not in text:
        return
    for m in _EMAIL.finditer(text):
        yield m.span()


# -- phone numbers -----------------------------------------------------------------------
# International: + (or 00) and 8-15 digits with the separators people write. National:
# the North American 3-3-4 forms (with or without a leading 1) and trunk-0 numbers written
# in groups (UK, FR, DE, ...), or as one run of 10-11 digits. Loose digit runs (ids,
# counts, timestamps) are not phones.
_PHONE = re.compile(
    r"(?<![\w+.-])(?:"
    r"\+\d[\d ().-]{6,22}\d"
    r"|(?:1[ -]?)?\(\d{3}\) ?\d{3}[-. ]\d{4}"
    r"|(?:1-)?\d{3}[-.]\d{3}[-.]\d{4}|(?:1 )?\d{3} \d{3} \d{4}"
    r"|0\d{1,4}(?:[ -]\d{2,8}){1,4}"
    r"|\(0\d{1,4}\) ?\d{2,8}(?:[ -]\d{2,8}){0,3}"
    r"|0[1-9]\d{8,9}"
    r")(?![\w-]|\.\d)")
_PHONE_DOUBLE_SEP = re.compile(r"[ .-]{2}|\.\.|\(\(|\)\)")


def _phone_ok(candidate: str) -> bool:
    digits = sum(c.isdigit() for c in candidate)
    if candidate.startswith("+"):
        return 8 <= digits <= 15 and not _PHONE_DOUBLE_SEP.search(candidate) \
            and candidate.count("(") == candidate.count(")") <= 1
    if candidate.startswith("00"):  # the international prefix written as 00
        return 10 <= digits <= 17
    if candidate.startswith(("0", "(0")):
        return 9 <= digits <= 12
    return digits == 10 or (digits == 11 and candidate[0] == "1")


def _phones(text: str) -> Iterator[tuple[int, int]]:
    for m in _PHONE.finditer(text):
        if _phone_ok(m.group()):
            yield m.span()


# -- card numbers ------------------------------------------------------------------------
# 13-19 digits, optionally grouped with spaces or dashes, starting like an issuer's range
# (2-6: Mastercard, Amex/Diners/JCB, Visa, Mastercard/Maestro, Discover/UnionPay) and
# Luhn-valid; this rules out epoch milliseconds and most ids. Written cards group the
# first four digits together.
# (The look-behind follows the first four digits so the regex engine can skip ahead to
# a digit 2-6 instead of trying the look-behind at every position.)
_CARD = re.compile(r"[2-6]\d{3}(?<![\w-][2-6]\d{3})(?:[ -]?\d){9,15}(?!\w)")


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum of a string of digits (payment card numbers carry one)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _cards(text: str) -> Iterator[tuple[int, int]]:
    for m in _CARD.finditer(text):
        raw = m.group()
        digits = raw.replace(" ", "").replace("-", "")
        if raw[-1].isdigit() and luhn_ok(digits):
            yield m.span()


# -- IBANs -------------------------------------------------------------------------------
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![a-z0-9])")
# Lengths of the common countries; others must only be 15-34 characters long.
IBAN_LENGTHS = {
    "AD": 24, "AT": 20, "BE": 16, "BG": 22, "CH": 21, "CY": 28, "CZ": 24, "DE": 22,
    "DK": 18, "EE": 20, "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GR": 27, "HR": 21,
    "HU": 28, "IE": 22, "IS": 26, "IT": 27, "LI": 21, "LT": 20, "LU": 20, "LV": 21,
    "MC": 27, "MT": 31, "NL": 18, "NO": 15, "PL": 28, "PT": 25, "RO": 24, "SE": 24,
    "SI": 19, "SK": 24, "SM": 27, "TR": 26, "AE": 23, "SA": 24, "IL": 23, "BR": 29,
}


def iban_ok(compact: str) -> bool:
    """ISO 13616 mod-97 check of an IBAN without spaces (upper case)."""
    if not 15 <= len(compact) <= 34 or not compact.isalnum():
        return False
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(c, 36)) for c in rearranged)
    return int(number) % 97 == 1


def _ibans(text: str) -> Iterator[tuple[int, int]]:
    for m in _IBAN.finditer(text):
        raw = m.group()
        compact = raw.replace(" ", "")
        length = IBAN_LENGTHS.get(raw[:2])
        if length is not None:
            # the run may have swallowed a following word ("... 3000 EUR"): cut at the
            # country's length and find where that many characters end in the raw text
            if len(compact) < length or not iban_ok(compact[:length]):
                continue
            seen = end = 0
            while seen < length:
                if raw[end] != " ":
                    seen += 1
                end += 1
            yield m.start(), m.start() + end
        elif iban_ok(compact):
            yield m.span()


# -- IP addresses ------------------------------------------------------------------------
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)")
_IPV6 = re.compile(r"(?<![\w:.])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}"
                   r"(?:(?<=:)(?:\d{1,3}\.){3}\d{1,3})?(?![\w:])")


def _ips(text: str) -> Iterator[tuple[int, int]]:
    if "." in text:
        for m in _IPV4.finditer(text):
            if all(int(part) <= 255 and (part == "0" or part[0] != "0")
                   for part in m.group().split(".")):
                yield m.span()
    if "::" in text or text.count(":") >= 7:
        for m in _IPV6.finditer(text):
            candidate = m.group()
            if any(c.isalnum() for c in candidate):
                try:
                    ipaddress.IPv6Address(candidate)
                except ValueError:
                    continue
                yield m.span()


# -- tokens and secrets ------------------------------------------------------------------
_TOKEN = re.compile(
    r"(?P<bearer>\b[Bb]earer\s+)(?P<bv>[A-Za-z0-9._~+/-]{8,}=*)"
    r"|\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{10,255}\b"
    r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"
    r"|\bgh[pousr]_[A-Za-z0-9]{36,255}\b|\bgithub_pat_[A-Za-z0-9_]{22,255}\b"
    r"|\bxox[abprs]-[A-Za-z0-9-]{10,255}"
    r"|\beyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"
    r"|(?P<key>(?i:\b(?:api[_-]?key|secret|client[_-]?secret|password|passwd|"
    r"access[_-]?token|auth[_-]?token))[\"']?\s*[=:]\s*[\"']?)(?P<kv>[^\s\"',;&]{6,})")
_ENTROPIC = re.compile(r"(?<![A-Za-z0-9+/_=.-])[A-Za-z0-9+/_-]{32,512}={0,2}"
                       r"(?![A-Za-z0-9+/_=.-])")
ENTROPY_BITS = 4.2  # bits per character: random base62/64 text scores ~4.5-5.5


def entropy(text: str) -> float:
    """Shannon entropy of the characters of `text`, in bits per character."""
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in Counter(text).values()) if n else 0.0


def high_entropy(candidate: str) -> bool:
    """A long run that mixes cases and digits as keys do; hex digests and words do not."""
    return (any(c.isupper() for c in candidate) and any(c.islower() for c in candidate)
            and any(c.isdigit() for c in candidate) and entropy(candidate) >= ENTROPY_BITS)


_TOKEN_TRIGGERS = ("earer", "sk_", "rk_", "pk_", "AKIA", "ASIA", "gh", "xox", "eyJ", "KEY",
                   "Key", "key", "ECRET", "ecret", "ASSW", "assw", "OKEN", "oken")


def _tokens(text: str) -> Iterator[tuple[int, int]]:
    if any(t in text for t in _TOKEN_TRIGGERS):
        for m in _TOKEN.finditer(text):
            if m.group("bv") is not None:
                yield m.span("bv")
            elif m.group("kv") is not None:
                yield m.span("kv")
            else:
                yield m.span()
    if len(text) >= 32 and any(len(word) >= 32 for word in text.split()):
        for m in _ENTROPIC.finditer(text):
            if high_entropy(m.group().rstrip("=")):
                yield m.span()


_FINDERS: dict[str, Callable[[str], Iterator[tuple[int, int]]]] = {
    EMAIL: _emails, PHONE: _phones, CARD: _cards, IBAN: _ibans, IP: _ips, TOKEN: _tokens}


# Fewest digits a value of each kind has: most log lines are gated out by a count.
_MIN_DIGITS = {PHONE: 7, CARD: 13, IBAN: 8, IP: 4}


def _digit_count(text: str) -> int:
    return sum(map(text.count, "0123456789"))


def find(text: str, kinds: Iterable[str] = SPAN_KINDS) -> list[Span]:
    """Non-overlapping PII spans in `text`, in order. On overlap the longer span wins,
    then the earlier-listed kind, so a JWT is one token, not a token and a phone."""
    found: list[tuple[int, int, int, str]] = []
    digits = -1
    for rank, kind in enumerate(kinds):
        need = _MIN_DIGITS.get(kind)
        if need is not None:
            if digits < 0:
                digits = _digit_count(text)
            if digits < need:
                continue
        found.extend((start, start - end, rank, kind) for start, end in _FINDERS[kind](text))
    if len(found) < 2:
        return [Span(start, start - neg, kind) for start, neg, _, kind in found]
    found.sort()
    kept: list[Span] = []
    for start, neg, _, kind in found:
        if kept and start < kept[-1].end:
            continue
        kept.append(Span(start, start - neg, kind))
    return kept


def kinds_in(text: str, kinds: Iterable[str] = SPAN_KINDS) -> set[str]:
    """Which kinds of PII occur anywhere in `text`."""
    return {span.kind for span in find(text, kinds)}


# -- masking -----------------------------------------------------------------------------
def mask_email(value: str) -> str:
    """`peter@example.com` -> `p***@example.com`: the domain stays for debugging."""
    local, _, domain = value.partition("@")
    return f"{local[:1]}***@{domain}"


def _mask_chars(value: str, keep: int, which: Callable[[str], bool]) -> str:
    """Characters `which` accepts become `*` except the last `keep` of them; the others
    (separators) stay, so the masked value keeps its shape."""
    total = sum(1 for c in value if which(c))
    out = []
    seen = 0
    for c in value:
        if which(c):
            seen += 1
            out.append(c if seen > total - keep else "*")
        else:
            out.append(c)
    return "".join(out)


_TOKEN_PREFIX = re.compile(r"(?:sk|rk|pk)_(?:live|test)_|AKIA|ASIA|gh[pousr]_|github_pat_"
                           r"|xox[abprs]-")


def mask_span(kind: str, value: str) -> str:
    """The masked form of one detected value of `kind`."""
    if kind == EMAIL:
        return mask_email(value)
    if kind == CARD:
        return _mask_chars(value, 4, str.isdigit)  # the last four, as receipts print them
    if kind == PHONE:
        return _mask_chars(value, 2, str.isdigit)
    if kind == IBAN:
        return value[:2] + _mask_chars(value[2:], 4, str.isalnum)
    if kind == IP:
        return "[ip]"
    prefix = _TOKEN_PREFIX.match(value)  # say which kind of key leaked, never any of it
    return (prefix.group() if prefix else "") + "***"


def mask(text: str, kinds: Iterable[str] = LOG_KINDS) -> str:
    """`text` with every PII span of `kinds` masked (unchanged when there is none)."""
    spans = find(text, kinds)
    if not spans:
        return text
    out: list[str] = []
    pos = 0
    for span in spans:
        out.append(text[pos:span.start])
        out.append(mask_span(span.kind, text[span.start:span.end]))
        pos = span.end
    out.append(text[pos:])
    return "".join(out)


# -- names (whole values) ----------------------------------------------------------------
NAME_HINTS = ("name", "surname", "author", "contact", "owner", "customer", "recipient",
              "sender", "signatory", "holder", "person", "patient", "employee")
# Capitalised words that start or make up labels, places and statuses, not names.
_NOT_NAMES = frozenset((
    "the", "and", "of", "for", "new", "old", "san", "los", "united", "states", "kingdom",
    "street", "road", "avenue", "lane", "city", "county", "north", "south", "east", "west",
    "main", "inc", "ltd", "llc", "gmbh", "corp", "company", "bank", "group", "team",
    "admin", "user", "test", "demo", "default", "unknown", "none", "null", "pending",
    "active", "closed", "open", "failed", "processed", "queued", "draft", "paid",
    "refunded", "sent", "mr", "mrs", "ms", "dr", "total", "order", "invoice", "product"))
# Lower-case particles inside names: "Ludwig van Beethoven", "Maria de la Cruz".
_PARTICLES = frozenset(("van", "von", "der", "den", "de", "la", "le", "du", "da", "di",
                        "del", "dos", "bin", "al", "ter"))


def _name_word(word: str, capitals: bool = False) -> bool:
    """A capitalised word ('Ada', "O'Brien"); with `capitals`, one written in capitals
    too ('MARY'), as some systems store names."""
    if len(word) == 2 and word[1] == "." and word[0].isupper():  # an initial
        return True
    core = word.replace("-", "").replace("'", "")
    if not (len(word) >= 2 and word[0].isupper() and core.isalpha()):
        return False
    return capitals or word[1:].replace("-", "").replace("'", "") != word[1:].upper()


# Tables of people: a bare `name` column is a person's name only in one of these (a
# category's or a language's `name` is not).
PEOPLE_TABLES = ("user", "customer", "person", "people", "contact", "employee", "staff",
                 "member", "patient", "author", "actor", "client", "account", "profile",
                 "student", "driver", "guest", "owner", "recipient", "sender")


def name_hint(column: str, table: str = "") -> bool:
    """Does a column's name say it holds people's names (`display_name`, `author`)? A
    bare `name` does only in a table of people (when the table is known)."""
    lowered = column.lower()
    if lowered == "name" and table:
        return any(hint in table.lower() for hint in PEOPLE_TABLES)
    return any(hint in lowered for hint in NAME_HINTS) and not lowered.endswith(
        ("_id", "_at", "_count", "filename", "file_name", "hostname", "username"))


def looks_like_name(value: str, hinted: bool = False) -> bool:
    """'Ada Lovelace', 'Jean-Luc Picard', 'Ludwig van Beethoven': 2-5 capitalised words
    (particles between them), none a common non-name word. With a hint from the column's
    name one word is enough, and names in capitals count ('MARY SMITH': without the
    hint, 'HTTP ERROR' would too)."""
    words = value.strip().split()
    if not (2 <= len(words) <= 5 or (hinted and len(words) == 1)):
        return False
    if len(value) > 80:
        return False
    for i, word in enumerate(words):
        if 0 < i < len(words) - 1 and word in _PARTICLES:
            continue
        if not _name_word(word, hinted) or word.lower().rstrip(".") in _NOT_NAMES:
            return False
    return not all(len(w) == 2 and w.endswith(".") for w in words)


PHONE_HINTS = ("phone", "mobile", "tel", "fax", "msisdn", "cell")
_PHONE_SHAPED = re.compile(r"\+?[\d ().-]{7,24}")


def phone_hint(column: str) -> bool:
    """Does a column's name say it holds phone numbers (`phone`, `mobile_no`, `tel`)?"""
    lowered = column.lower()
    return any(hint in lowered for hint in PHONE_HINTS) and not lowered.endswith(
        ("_id", "_at", "_count", "_verified", "_type"))


# -- stored password hashes (whole values) -----------------------------------------------
# Modular crypt ($2b$ bcrypt, $argon2id$, $6$ sha512-crypt, passlib's $scrypt$ln=…,
# $pbkdf2-sha256$ and $bcrypt-sha256$, ...), Django's `algo$...` (lethe's own API key
# hashes too), Werkzeug's `scrypt:32768:8:1$salt$hex` and `pbkdf2:sha256:600000$...`,
# LDAP `{SSHA}`; a bare hex digest only under a password column's name (it is also a
# checksum).
_PASSWORD_HASH = re.compile(
    r"\$(?:2[abxy]?|argon2(?:id|i|d)|scrypt|1|5|6|7|y|gy|pbkdf2(?:-[a-z0-9]+)?|sha1|md5"
    r"|bcrypt-sha256)\$\S{8,}"
    r"|(?:pbkdf2_sha256|pbkdf2_sha1|argon2|bcrypt_sha256|bcrypt|scrypt|sha1|md5)\$\S{8,}"
    r"|(?:scrypt|pbkdf2)(?::[a-z0-9]{1,12}){1,4}\$[^$\s]{1,64}\$[0-9a-f]{32,256}"
    r"|\{(?:SSHA|SHA|SSHA256|SSHA512|SMD5|MD5|CRYPT)\}\S{8,}")
_HEX_DIGEST = re.compile(r"(?:[0-9a-f]{32}|[0-9a-f]{40}|[0-9a-f]{64}|[0-9a-f]{128})"
                         r"|(?:[0-9A-F]{32}|[0-9A-F]{40}|[0-9A-F]{64}|[0-9A-F]{128})")
PASSWORD_HINTS = ("password", "passwd", "pwd", "passhash", "pass_hash", "pw_hash")


def password_hint(column: str) -> bool:
    """Does a column's name say it holds passwords (`password`, `pwd_hash`)?"""
    lowered = column.lower()
    return any(hint in lowered for hint in PASSWORD_HINTS) and not lowered.endswith(
        ("_at", "_count", "_changed", "_expires", "_policy"))


def looks_like_password_hash(value: str, column: str = "") -> bool:
    """A stored password hash: a credential, not a token (nobody sends it anywhere)."""
    text = value.strip()
    return bool(_PASSWORD_HASH.fullmatch(text)) or (
        password_hint(column) and bool(_HEX_DIGEST.fullmatch(text)))


def detect(value: str, column: str = "", table: str = "") -> set[str]:
    """The kinds of PII in one column value. The column's name helps: under `phone` a
    short local number (`555-0123`) counts, under `full_name` a single capitalised word,
    under `password` a hex digest is a credential (a bcrypt hash is one anywhere)."""
    if len(value) <= 256 and looks_like_password_hash(value, column):
        return {CREDENTIAL}
    kinds = kinds_in(value)
    if kinds or len(value) > 80:
        return kinds
    if phone_hint(column) and _PHONE_SHAPED.fullmatch(value.strip()) and \
            7 <= sum(c.isdigit() for c in value) <= 15:
        kinds.add(PHONE)
    elif looks_like_name(value, name_hint(column, table)):
        kinds.add(NAME)
    return kinds
