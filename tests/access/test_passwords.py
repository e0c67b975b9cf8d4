"""Passwords: argon2id hashes that verify in constant time, and each rule a new password must
meet, each refusal naming what is wrong and how to fix it."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from cumulo.access.models import User
from cumulo.access.passwords import (
    COMMON_PASSWORDS,
    check_strength,
    hash_password,
    needs_rehash,
    set_password,
    verify_password,
)
from cumulo.errors import Invalid

GOOD = "tangerine-otter-lamp-42"


def test_a_hash_is_argon2id_salted_and_verifies_only_its_password() -> None:
    first, second = hash_password(GOOD), hash_password(GOOD)
    assert first.startswith("$argon2id$") and first != second  # a salt of its own each
    assert GOOD not in first
    assert verify_password(first, GOOD) and verify_password(second, GOOD)
    assert not verify_password(first, GOOD + " ")
    assert not verify_password(first, "")


def test_no_hash_or_a_broken_one_verifies_nothing() -> None:
    assert not verify_password(None, GOOD)
    assert not verify_password("", GOOD)
    assert not verify_password("$argon2id$not-a-hash", GOOD)
    assert not verify_password("5f4dcc3b5aa765d61d8327deb882cf99", "password")  # an old MD5


def test_a_hash_made_with_weaker_settings_is_due_for_a_new_one() -> None:
    assert not needs_rehash(hash_password(GOOD))
    weak = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash(GOOD)
    assert verify_password(weak, GOOD)  # still works: it is hashed again at sign-in
    assert needs_rehash(weak)
    assert needs_rehash("not a hash")


@pytest.mark.parametrize(("password", "problem"), [
    ("short-pw-1", "is 10 characters long: use at least 12"),
    ("x" * 1025, "is 1,025 characters long: use at most 1,024"),
    ("my-name-is-Alice-ok", "contains the user name"),
    ("password1234", "is a common password"),
    ("Password2024!", "is a common password, or one with digits or symbols added"),
    ("!!Sunshine1999", "is a common password"),
    ("P@ssw0rd-2025", "is a common password"),
    ("correcthorsebatterystaple", "is a common password"),
    ("aaaaaaaaaaaa", "is one short piece repeated"),
    ("abcabcabcabcabc", "is one short piece repeated"),
    ("123456789012", "is only digits"),
    ("907315526481", "is only digits"),
    ("aaaaaaaaaaab", "uses fewer than 5 different characters"),
    ("abcdefghijklm", "is a run of consecutive characters"),
    ("ZYXWVUTSRQPO", "is a run of consecutive characters"),
])
def test_each_weak_password_is_refused_saying_why_and_how_to_fix_it(password: str,
                                                                    problem: str) -> None:
    with pytest.raises(Invalid) as refused:
        check_strength(password, user_name="alice")
    message = refused.value.message
    assert message.startswith("the password ") and problem in message
    assert "a few unrelated words together, or what a password manager makes" in message
    assert password not in message  # never echoed: messages end up in logs
    assert refused.value.details["problems"]


def test_every_problem_is_named_at_once() -> None:
    with pytest.raises(Invalid) as refused:
        check_strength("bobbobbobbob", user_name="bob")
    assert refused.value.details["problems"] == ["contains the user name",
                                                 "is one short piece repeated"]


@pytest.mark.parametrize("password", [GOOD, "Zq8#mL2!vR0p", "purple sky over 7 hills",
                                      "Password-of-my-own-9",
                                      ("tangerine otter lamp " * 50)[:1023] + "!"])
def test_a_good_password_passes(password: str) -> None:
    check_strength(password, user_name="alice")


def test_a_short_user_name_is_not_a_reason() -> None:
    check_strength("xa-tangerine-otter", user_name="xa")  # two letters: inside many words


def test_the_common_list_ships_with_the_package() -> None:
    assert len(COMMON_PASSWORDS) >= 300
    assert {"password", "123456", "qwerty", "iloveyou"} <= COMMON_PASSWORDS


def test_setting_a_password_checks_it_and_ends_a_lockout() -> None:
    from datetime import UTC, datetime

    alice = User(name="alice", kind="person", failed_logins=7,
                 locked_until=datetime(2030, 1, 1, tzinfo=UTC))
    with pytest.raises(Invalid, match="is a common password"):
        set_password(alice, "password1234")
    assert alice.password_hash is None and alice.failed_logins == 7
    set_password(alice, GOOD)
    assert alice.password_hash is not None and verify_password(alice.password_hash, GOOD)
    assert alice.failed_logins == 0 and alice.locked_until is None

    robot = User(name="robot", kind="service")
    with pytest.raises(Invalid, match="service accounts sign in with tokens"):
        set_password(robot, GOOD)
    assert robot.password_hash is None
