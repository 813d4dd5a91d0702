"""The PII detectors find what they claim, reject look-alikes and mask without leaking."""

from __future__ import annotations

import random
import subprocess
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from lethe import pii


def luhn_complete(prefix: str) -> str:
    """`prefix` plus the check digit that makes it Luhn-valid."""
    for check in "0123456789":
        if pii.luhn_ok(prefix + check):
            return prefix + check
    raise AssertionError("unreachable")


def kinds(text: str) -> set[str]:
    return pii.kinds_in(text)


def test_emails_are_found_and_masked_keeping_the_domain() -> None:
    text = "reset sent to peter.parker+news@mail.example.com at 12:00"
    assert kinds(text) == {pii.EMAIL}
    assert pii.mask(text) == "reset sent to p***@mail.example.com at 12:00"
    assert kinds("user@localhost and a@b") == set()


def test_phone_numbers_international_and_national() -> None:
    for phone in ["+14155550132", "+44 20 7946 0958", "+33 6 12 34 56 78", "(415) 555-0132",
                  "415-555-0132", "415.555.0132", "020 7946 0958", "06 12 34 56 78",
                  "+49 (30) 901820", "07700900123", "1-800-555-0199", "0044 20 7946 0958",
                  "(020) 7946 0958", "+1 (415) 555-0132"]:
        assert kinds(f"call {phone} today") == {pii.PHONE}, phone
        assert phone[-2:] in pii.mask(phone) and phone[:-2] not in pii.mask(phone)


def test_timestamps_versions_and_counts_are_not_phones() -> None:
    for text in ["2026-06-01 12:00:00,123", "took 1234567 ms", "v1.2.3.4", "id 42",
                 "at 1717243200", "2026-06-01T12:00:00+00:00", "rows 10000000"]:
        assert kinds(text) == set(), text


@given(st.text("0123456789", min_size=12, max_size=18).map(lambda s: "4" + s))
def test_luhn_valid_numbers_are_cards(body: str) -> None:
    number = luhn_complete(body[:-1])
    grouped = " ".join(number[i:i + 4] for i in range(0, len(number), 4))
    assert pii.CARD in kinds(f"paid with {number}")
    assert pii.CARD in kinds(f"paid with {grouped}")
    masked = pii.mask(grouped).replace(" ", "")
    assert masked == "*" * (len(number) - 4) + number[-4:]


@settings(max_examples=300)
@given(st.text("0123456789", min_size=13, max_size=19))
def test_a_card_is_only_a_luhn_valid_number(digits: str) -> None:
    assert (pii.CARD in kinds(f"n {digits} ")) == (
        digits[0] in "23456" and pii.luhn_ok(digits))


def test_random_digit_strings_are_mostly_not_cards() -> None:
    rng = random.Random(7)
    hits = sum(pii.CARD in kinds(f"ref {''.join(rng.choices('0123456789', k=16))}")
               for _ in range(2000))
    assert hits < 2000 * 0.1  # Luhn admits one in ten, the issuer ranges half of those


def test_ibans_are_mod97_validated() -> None:
    assert kinds("pay to DE89 3704 0044 0532 0130 00 EUR") == {pii.IBAN}
    assert kinds("pay to GB82WEST12345698765432") == {pii.IBAN}
    assert pii.IBAN not in kinds("pay to DE88 3704 0044 0532 0130 00")  # one digit off
    assert kinds("pay to DE88370400440532013000") == set()
    assert pii.mask("DE89370400440532013000") == "DE" + "*" * 16 + "3000"


def test_ip_addresses() -> None:
    assert pii.kinds_in("from 203.0.113.9", pii.SPAN_KINDS) == {pii.IP}
    assert pii.kinds_in("from 2001:db8::8a2e:370:7334", pii.SPAN_KINDS) == {pii.IP}
    assert pii.kinds_in("v 999.1.1.1 at 12:30:45 and 1.2.3.4.5", pii.SPAN_KINDS) == set()


def test_tokens_and_secrets() -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
    samples = {
        "Authorization: Bearer abcDEF123ghiJKL456": "Authorization: Bearer ***",
        "key sk_live_4eC39HqLyjWDarjtT1zdp7dc": "key sk_live_***",
        "aws AKIAIOSFODNN7EXAMPLE": "aws AKIA***",
        "gh ghp_" + "aB3" * 12: "gh ghp_***",
        f"token {jwt}": "token ***",
        "password=hunter2hunter2": "password=***",
        "blob kZ9qT3xW7vB2nL5mR8pY1sD4fG6hJ0cE done": "blob *** done",
    }
    for text, masked in samples.items():
        assert pii.mask(text) == masked, text


def test_hex_digests_and_identifiers_are_not_secrets() -> None:
    for text in ["sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                 "uuid 123e4567-e89b-12d3-a456-426614174000", "lethe.engine.execute.sweep"]:
        assert kinds(text) == set(), text


def test_names_need_capitalised_words_or_a_column_hint() -> None:
    assert pii.detect("Ada Lovelace") == {pii.NAME}
    assert pii.detect("Ludwig van Beethoven") == {pii.NAME}
    assert pii.detect("Ada") == set()
    assert pii.detect("Ada", column="first_name") == {pii.NAME}
    for value in ["processed", "Pending Review", "User 7", "ADA LOVELACE", "hello world"]:
        assert pii.detect(value, column="status") == set(), value


def test_phone_hint_accepts_short_local_numbers() -> None:
    assert pii.detect("555-0123", column="phone") == {pii.PHONE}
    assert pii.detect("555-0123", column="sku") == set()


def test_masking_is_idempotent_and_leaves_clean_text_alone() -> None:
    text = "a@example.com paid 4111 1111 1111 1111 from +44 20 7946 0958"
    once = pii.mask(text)
    assert pii.mask(once) == once
    clean = "GET /api/v1/runs 200 in 12.5 ms (batch 3 of 10)"
    assert pii.mask(clean) is clean


def test_no_catastrophic_backtracking_on_hostile_input() -> None:
    """Each detector over 10-20 k characters built to make a backtracking regex explode
    (a nested quantifier would take hours on these). Run in a child process so a
    regression is a failed test within the hang guard, not a stuck suite; how fast the
    detectors are is measured in bench/masking.py, not here."""
    script = (
        "from lethe import pii\n"
        "hostile = ['a' * 20000 + '@', '1-' * 10000, '+1' + ' 2' * 10000, 'A1' * 10000 + '@x',"
        " '::' * 5000, '1.' * 10000, 'DE89' + ' 1234' * 5000]\n"
        "found = [sorted({s.kind for s in pii.find(t, pii.SPAN_KINDS)}) for t in hostile]\n"
        "print(found[0])\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "email" not in done.stdout  # 20,000 a's and an @ are not an address


def test_digits_inside_a_hex_digest_are_not_a_card() -> None:
    digest = "5e75788f9fb886b2a662cb924748ffb3d0a96757a8702d9710e6717638583966"
    assert pii.luhn_ok("6717638583966")
    assert kinds(f"sha256={digest}") == set()


def test_names_in_capitals_count_under_a_name_column_only() -> None:
    """Some systems store names in capitals (a rental sample database: MARY SMITH)."""
    assert pii.detect("MARY SMITH", column="full_name") == {pii.NAME}
    assert pii.detect("MARY", column="first_name") == {pii.NAME}
    assert pii.detect("MARY SMITH", column="notes") == set()  # HTTP ERROR would be too
    assert pii.detect("NEW ORDER", column="customer_name") == set()  # label words stay out


def test_a_bare_name_column_is_a_person_only_in_a_table_of_people() -> None:
    for value, table in [("Comedy", "category"), ("English", "language"),
                         ("Sci-Fi", "category")]:
        assert pii.detect(value, column="name", table=table) == set(), value
    assert pii.detect("Ada", column="name", table="customer") == {pii.NAME}
    assert pii.detect("Ada", column="name", table="staff") == {pii.NAME}


def test_password_hashes_are_credentials_not_tokens() -> None:
    bcrypt = "$2b$12$KIXQJ5dMzvVb9Zg7yq0oE.2xq2Zlq6qzF3mZ5cG8n7u5o8m3jY1mS"
    argon = "$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG"
    django = "pbkdf2_sha256$600000$Hq1p3XrE$2bX8wq5m0Uo0Jc1Zk3h4f5A6B7C8D9E0F1G2H3I4J5K="
    sha1 = "8cb2237d0679ca88db6464eac60da96345513964"
    passlib = [  # issue 23, item 4: each of these read as a leaked token before
        "$scrypt$ln=15,r=8,p=1$c2FsdHNhbHRzYWx0$Rm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1eA",
        "$pbkdf2-sha256$29000$N2YuDYBwDqHUWmvNiVFq7Q$Fc8s5A6Hr3wYf0bK9ZlLhC0cVBqT6Z8u0vQyF1Xg7nE",
        "$bcrypt-sha256$v=2,t=2b,r=12$n79VH.0Q2TMWmt3Oqt9uku$Kq4Noyk3094Y2QlB8NdRT8SvGiI4ft2",
        "$6$rounds=656000$YQkRvG2lVUrI9Hc2$Ax0ZpO0kyyP2W7bTbD1hCkQmW1dJo0a0FyCH0VfCXZbX9XqGqQ9",
        "argon2$argon2id$v=19$m=102400,t=2,p=8$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG",
        "scrypt$16384$c2FsdA$8$1$Rm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1eA==",  # Django, lethe
    ]
    werkzeug = ["scrypt:32768:8:1$rJ9qH0Q8yW6tQ2Fv$" + "ab" * 64,
                "pbkdf2:sha256:600000$Pq1Xz9mN$" + "0f" * 32]
    for value in (bcrypt, argon, django, *passlib, *werkzeug):
        assert pii.detect(value, column="hash") == {pii.CREDENTIAL}, value
        assert pii.detect(value, column="notes") == {pii.CREDENTIAL}, value
    assert pii.detect(sha1, column="password") == {pii.CREDENTIAL}
    assert pii.detect(sha1, column="checksum") == set()  # a digest is not a credential
    assert pii.detect("hunter2", column="password") == set()  # plain text: not a hash
