"""Passwords: argon2id hashes (argon2-cffi's defaults), checked in constant time, and the rules
a new password must meet.

Only the hash is kept (``User.password_hash``). A user without one (a service account, an admin
made with a token, a single sign-on user) cannot sign in with a password; checking a password
against no hash costs as much as against a real one, so the time a refusal takes does not tell
whether the user exists.
"""

from __future__ import annotations

import itertools
import re
import secrets
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from cumulo.access.models import User
from cumulo.errors import Invalid

__all__ = [
    "COMMON_PASSWORDS",
    "MAX_LENGTH",
    "MIN_LENGTH",
    "check_strength",
    "hash_password",
    "needs_rehash",
    "set_password",
    "verify_password",
]

MIN_LENGTH = 12
# Long enough for any passphrase; short enough that hashing one is not a way to load the server.
MAX_LENGTH = 1024
_FEWEST_DISTINCT = 5
_hasher = PasswordHasher()

# The most used passwords (from the lists published after large leaks), lower case. A password
# is refused when it is one of these, or one of these with digits or symbols around it
# ("Password2024!"), or with letters written as digits ("p@ssw0rd"). Short ones are here too:
# with digits added they reach the length.
_COMMON = """
123456 password 12345678 qwerty 123456789 12345 1234 111111 1234567 dragon 123123 baseball
abc123 football monkey letmein 696969 shadow master 666666 qwertyuiop 123321 mustang
1234567890 michael 654321 superman 1qaz2wsx 7777777 121212 000000 qazwsx 123qwe killer
trustno1 jordan jennifer zxcvbnm asdfgh hunter buster soccer harley batman andrew tigger
sunshine iloveyou charlie robert thomas hockey ranger daniel starwars klaster 112233 george
computer michelle jessica pepper 1111 zxcvbn 555555 11111111 131313 freedom 777777 pass maggie
159753 aaaaaa ginger princess joshua cheese amanda summer love ashley nicole chelsea biteme
matthew access yankees 987654321 dallas austin thunder taylor matrix minecraft william
corvette hello martin heather secret merlin diamond 1234qwer gfhjkm hammer silver 222222
88888888 anthony justin test bailey q1w2e3r4t5 patrick internet scooter orange 11111 golfer
cookie richard samantha bigdog guitar jackson whatever mickey chicken sparky snoopy maverick
phoenix camaro peanut morgan welcome falcon cowboy ferrari samsung andrea smokey steelers
joseph mercedes dakota arsenal eagles melissa boomer booboo spider nascar monster tigers
yellow xxxxxx 123123123 gateway marina diablo bulldog qwer1234 compaq purple banana junior
hannah 123654 porsche lakers iceman money cowboys 987654 london tennis 999999 ncc1701 coffee
scooby 0000 miller boston q1w2e3r4 brandon yamaha chester mother forever johnny edward 333333
oliver redsox player nikita knight fender barney midnight please brandy chicago badboy slayer
rangers charles angel flower rabbit wizard jasper enter rachel chris steven winner adidas
victoria natasha 1q2w3e4r jasmine winter prince marine fishing cocacola casper james 232323
raiders 888888 marlboro gandalf asdfasdf crystal 87654321 12344321 golden 8675309 lovely
admin administrator root toor changeme default guest user login welcome1 passw0rd password1
password123 password1234 qwerty123 qwerty1234 qwerty123456 qwertyuiop123 1q2w3e4r5t
1q2w3e4r5t6y 1qaz2wsx3edc zaq12wsx zaq12wsxcde3 qazwsxedc qazwsxedcrfv asdfghjkl asdfghjkl123
zxcvbnm123 iloveyou1 iloveyou123 letmein123 welcome123 abcdef abcdefg abcdefgh abc12345
abcd1234 aa123456 a123456 123456a 123456789a qwe123 qweasd qweasdzxc 1qazxsw2 mypassword
secret123 monkey123 dragon123 sunshine1 princess1 football1 baseball1 superman1 batman123
trustno1trustno1 correcthorsebatterystaple correcthorse batterystaple letmeinplease
opensesame helloworld hello123 welcomehome godisgood jesus jesus1 blessed blink182 pokemon
naruto starwars1 harrypotter hogwarts liverpool manchester chelsea1 barcelona realmadrid
juventus soccer1 hockey1 basketball volleyball baseball123 mustang1 corvette1 ferrari1
mercedes1 porsche911 nintendo playstation xbox360 computer1 internet1 samsung1 iphone apple
google facebook youtube twitter instagram linkedin microsoft windows linux ubuntu oracle
database mysql postgres postgresql server cloud cumulo mlflow jupyter python java javascript
letmein1 freedom1 whatever1 loveme lovely1 iloveu ilovegod mylove sweetheart babygirl
princesa michelle1 jennifer1 jessica1 ashley1 nicole1 daniel1 michael1 charlie1 thomas1
master1 shadow1 killer1 hunter1 tigger1 summer1 winter1 spring autumn fall2024 summer2024
winter2024 spring2024 january february march april june july august september october
november december monday tuesday wednesday thursday friday saturday sunday passport
security secure1 privacy private confidential company business office manager support
service staff temp temp123 temppass newpass newpassword mynewpassword oldpassword
changeme123 changeit pa55word pa55w0rd p4ssw0rd p4ssword passwort motdepasse contrasena
senha parola wachtwoord salasana haslo jelszo heslo lozinka 1q2w3e 1q2w3e4r5 q1w2e3
asdf1234 asdfqwer zxcv1234 poiuytrewq mnbvcxz lkjhgfdsa 0987654321 147258369 741852963
159357 147852 258456 123789 789456 456789 963852741 1122334455 112233445566 aabbccdd
"""
COMMON_PASSWORDS = frozenset(_COMMON.split())

_LEET = str.maketrans("0134578@$!|", "oieastbasil")
_EDGES = re.compile(r"^[\W\d_]+|[\W\d_]+$")
_REPEATED = re.compile(r"(.+?)\1+", re.DOTALL)
_FIX = ("choose one that is hard to guess: a few unrelated words together, or what a password "
        "manager makes")


def hash_password(password: str) -> str:
    """The argon2id hash to keep for ``password``: salted, so two hashes of one password differ."""
    return _hasher.hash(password)


@cache
def _no_one() -> str:
    # A hash of a random password, checked against when a user has none: the same work,
    # so a refusal takes the same time whether or not the user exists.
    return _hasher.hash(secrets.token_urlsafe(32))


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` is the one ``password_hash`` was made from, in constant time. False
    for no hash, or a hash this module cannot read, after as much work as a real check."""
    try:
        return _hasher.verify(password_hash or _no_one(), password) and bool(password_hash)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """Whether a hash was made with weaker settings than today's (to hash again at sign-in)."""
    try:
        return _hasher.check_needs_rehash(password_hash)
    except (InvalidHashError, ValueError):
        return True


def _weaknesses(password: str, user_name: str) -> list[str]:
    if len(password) < MIN_LENGTH:
        return [f"is {len(password)} characters long: use at least {MIN_LENGTH}"]
    if len(password) > MAX_LENGTH:
        return [f"is {len(password):,} characters long: use at most {MAX_LENGTH:,}"]
    lower = password.casefold()
    found = []
    if len(user_name) >= 3 and user_name.casefold() in lower:
        found.append("contains the user name")
    core = _EDGES.sub("", lower)
    if {lower, core, core.translate(_LEET), lower.translate(_LEET)} & COMMON_PASSWORDS:
        found.append("is a common password, or one with digits or symbols added")
    if _REPEATED.fullmatch(password):
        found.append("is one short piece repeated")
    elif password.isdigit():
        found.append("is only digits")
    elif len(set(lower)) < _FEWEST_DISTINCT:
        found.append(f"uses fewer than {_FEWEST_DISTINCT} different characters")
    elif len({ord(b) - ord(a) for a, b in itertools.pairwise(lower)}) == 1:
        found.append("is a run of consecutive characters")
    return found


def check_strength(password: str, *, user_name: str) -> None:
    """Refuse a new password that is easy to guess, with Invalid naming each reason: under
    12 characters or over 1,024, containing the user name, a common password (also with digits
    or symbols around it), one short piece repeated, only digits, or a run like "abcdef..."."""
    found = _weaknesses(password, user_name)
    if found:
        raise Invalid(f"the password {', and '.join(found)}; {_FIX}",
                      details={"problems": found})


def set_password(user: User, password: str) -> None:
    """Give ``user`` a new password (checked, hashed; not committed). The account's lockout
    ends with it: an admin who sets a new password lets the user sign in at once."""
    if user.kind == "service":
        raise Invalid(f"{user.name} is a service account: service accounts sign in with tokens, "
                      "not passwords ('cumulo tokens create' as that account)")
    check_strength(password, user_name=user.name)
    user.password_hash = hash_password(password)
    user.failed_logins = 0
    user.locked_until = None
