"""The saved-logins file: one profile per server, nothing replaced unasked, the first format
still read, and the file written whole for its owner only."""

from __future__ import annotations

import os
import stat
import threading
import tomllib
from pathlib import Path

import pytest

from cumulo.client.profiles import editing, read_logins, same_server, server_name
from cumulo.config import load_client_settings
from cumulo.errors import Conflict, Invalid, NotFound

A, B = "http://127.0.0.1:8080", "https://cumulo.example.com"


def _env(path: Path, **extra: str) -> dict[str, str]:
    return {"CUMULO_CREDENTIALS": str(path), **extra}


def test_names_and_addresses() -> None:
    assert server_name(A) == "127.0.0.1:8080"
    assert server_name("https://Cumulo.example.com/team/") == "cumulo.example.com/team"
    assert same_server("http://127.0.0.1:8080/", A)
    assert same_server("https://cumulo.example.com:443", B)
    assert not same_server("http://127.0.0.1:8081", A)


def test_a_login_per_server_and_the_current_one(tmp_path: Path) -> None:
    path = tmp_path / "cumulo" / "credentials.toml"
    with editing(path) as logins:
        logins.login(A, "token-a", user="admin")
        logins.login(B, "token-b", user="alice")
    doc = tomllib.loads(path.read_text())
    assert doc == {"current": "cumulo.example.com", "profiles": {
        "127.0.0.1:8080": {"url": A, "token": "token-a", "user": "admin"},
        "cumulo.example.com": {"url": B, "token": "token-b", "user": "alice"}}}

    current = load_client_settings(env=_env(path))
    assert (current.url, current.token, current.profile) == (B, "token-b", "cumulo.example.com")
    assert current.source == f"profile 'cumulo.example.com' in {path}"
    named = load_client_settings(env=_env(path, CUMULO_PROFILE="127.0.0.1:8080"))
    assert (named.url, named.token) == (A, "token-a")
    # A URL alone picks the login saved for it, never the current one of another server.
    by_url = load_client_settings(env=_env(path, CUMULO_URL=A + "/"))
    assert (by_url.url, by_url.token, by_url.profile) == (A, "token-a", "127.0.0.1:8080")
    elsewhere = load_client_settings(env=_env(path, CUMULO_URL="http://10.0.0.9:8080"))
    assert (elsewhere.token, elsewhere.profile) == (None, None)


def test_the_environment_and_the_options_still_win(tmp_path: Path) -> None:
    path = tmp_path / "credentials.toml"
    with editing(path) as logins:
        logins.login(A, "token-a", user="admin")
    env = _env(path, CUMULO_URL="http://e:2/", CUMULO_TOKEN="t", CUMULO_PROFILE="nope")
    from_env = load_client_settings(env=env)  # CUMULO_PROFILE is not even looked up
    assert (from_env.url, from_env.token, from_env.source) == ("http://e:2", "t", "CUMULO_TOKEN")
    explicit = load_client_settings("http://arg:3", "a", env=env)
    assert (explicit.url, explicit.token, explicit.source) == ("http://arg:3", "a", "argument")
    # --profile (an option) wins over CUMULO_URL and CUMULO_TOKEN, as in the aws CLI.
    chosen = load_client_settings(env=env, profile="127.0.0.1:8080")
    assert (chosen.url, chosen.token, chosen.profile) == (A, "token-a", "127.0.0.1:8080")
    with pytest.raises(NotFound, match=r"no saved login named 'prod' .*saved: 127.0.0.1:8080"):
        load_client_settings(env=_env(path), profile="prod")
    with pytest.raises(Invalid, match=f"profile '127.0.0.1:8080' is a login to {A}, not to "
                                      "http://e:2"):
        load_client_settings("http://e:2", env=_env(path), profile="127.0.0.1:8080")
    nothing = load_client_settings(env=_env(tmp_path / "none.toml"))
    assert (nothing.url, nothing.token) == (A, None)


def test_another_server_or_user_is_never_replaced_unasked(tmp_path: Path) -> None:
    path = tmp_path / "credentials.toml"
    with editing(path) as logins:
        logins.login(A, "token-a", user="admin", name="work")
    before = path.read_bytes()
    with pytest.raises(Conflict, match=f"profile 'work' holds the login of admin at {A}, not of "
                                       f"alice at {B}: .*--force"), editing(path) as logins:
        logins.login(B, "token-b", user="alice", name="work")
    assert path.read_bytes() == before  # a refused change writes nothing
    with editing(path) as logins:
        logins.login(A, "token-a2", user="admin", name="work")  # the same login, renewed
        # Another user of the same server gets a profile of their own by default.
        assert logins.login(A, "token-c", user="carol").name == "127.0.0.1:8080"
        assert logins.login(A, "token-d", user="dave").name == "dave@127.0.0.1:8080"
        assert logins.login(B, "token-b", user="alice", name="work", force=True).url == B
    assert set(read_logins(path).profiles) == {"work", "127.0.0.1:8080", "dave@127.0.0.1:8080"}


def test_a_new_home_at_the_same_address_keeps_the_old_login(tmp_path: Path) -> None:
    path = tmp_path / "credentials.toml"
    with editing(path) as logins:
        first = logins.add_server(A, "first-home", user="admin")
    with editing(path) as logins:
        second = logins.add_server(A, "second-home", user="admin")
        again = logins.add_server(A, "second-home", user="admin")  # the same token: no copy
    assert (first.name, second.name, again.name) == ("127.0.0.1:8080", "127.0.0.1:8080-2",
                                                      "127.0.0.1:8080-2")
    saved = read_logins(path)
    assert saved.profiles["127.0.0.1:8080"].token == "first-home"
    # The current login was for this address, where the new server now answers: it moves.
    assert saved.current == "127.0.0.1:8080-2"
    with editing(path) as logins:
        logins.login(B, "token-b", user="alice")
        logins.add_server("http://127.0.0.1:9000", "third-home", user="admin")
    assert read_logins(path).current == "cumulo.example.com"  # another server's: left alone


def test_the_first_format_still_reads_and_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "credentials.toml"
    path.write_text(f'url = "{A}"\ntoken = "old-token"\n')
    old = load_client_settings(env=_env(path))
    assert (old.url, old.token, old.profile) == (A, "old-token", "127.0.0.1:8080")
    with editing(path) as logins:
        logins.login(B, "token-b", user="alice")
    doc = tomllib.loads(path.read_text())
    assert "url" not in doc and doc["current"] == "cumulo.example.com"
    assert doc["profiles"]["127.0.0.1:8080"] == {"url": A, "token": "old-token"}


@pytest.mark.parametrize(("content", "match"), [
    ("url = ", "not valid TOML"),
    ('[profiles.x]\nurl = "http://a:1"\n', "profile 'x' needs a url and a token"),
    ('profiles = "x"\n', "'profiles' must be a table"),
])
def test_a_broken_file_is_one_clear_error(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "credentials.toml"
    path.write_text(content)
    with pytest.raises(Invalid, match=match):
        load_client_settings(env=_env(path))
    with pytest.raises(Invalid, match=match), editing(path):
        pass
    assert path.read_text() == content


def test_written_whole_for_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "new" / "credentials.toml"
    with editing(path) as logins:
        logins.login(A, "secret", user="admin")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    path.chmod(0o644)  # loosened by hand: the next write tightens it again
    with editing(path) as logins:
        logins.login(B, "secret-b", user="alice")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(os.listdir(path.parent)) == ["credentials.toml", "credentials.toml.lock"]


def test_logins_saved_at_once_are_all_kept(tmp_path: Path) -> None:
    path = tmp_path / "credentials.toml"

    def save(i: int) -> None:
        with editing(path) as logins:
            logins.login(f"http://127.0.0.1:{9000 + i}", f"token-{i}", user="admin")

    threads = [threading.Thread(target=save, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(read_logins(path).profiles) == 8


def test_logout_and_use(tmp_path: Path) -> None:
    path = tmp_path / "credentials.toml"
    with editing(path) as logins:
        logins.login(A, "token-a", user="admin")
        logins.login(B, "token-b", user="alice")
    with editing(path) as logins:
        logins.remove("cumulo.example.com")
    saved = read_logins(path)
    assert list(saved.profiles) == ["127.0.0.1:8080"] and saved.current is None
    assert load_client_settings(env=_env(path)).token is None  # no current login: none used
    with editing(path) as logins:
        logins.use("127.0.0.1:8080")
        with pytest.raises(NotFound, match="no saved login named 'gone'"):
            logins.remove("gone")
