"""`farm users ...`: create (password from stdin, token printed once), list, token, disable."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from farm.accounts.service import authenticate, user_for_token
from farm.cli import main
from farm.db.session import transaction


def _farm(args, home, input=None):
    return CliRunner().invoke(main, args, env={"FARM_HOME": str(home)}, input=input)


def test_create_with_password_and_token(embedded_farm):
    home = embedded_farm.settings.home
    result = _farm(["users", "create", "ana", "--role", "campaign_manager", "--email", "ana@example.com",
                    "--password-stdin", "--token"], home, input="a long enough password\n")
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "created user ana (campaign_manager)"
    assert "will not be shown again" in lines[1]
    token = lines[2]
    with transaction(embedded_farm.session_factory) as session:
        assert user_for_token(session, token).name == "ana"
        assert authenticate(session, "ana", "a long enough password") is not None

    listed = _farm(["users", "list"], home)
    assert "ana" in listed.stdout and "campaign_manager" in listed.stdout and token not in listed.stdout
    rows = json.loads(_farm(["users", "list", "--json"], home).stdout)
    assert [(r["name"], r["role"], r["has_token"], r["email"]) for r in rows] == [
        ("ana", "campaign_manager", True, "ana@example.com")]


def test_new_token_replaces_the_old_and_disable_refuses_it(embedded_farm):
    home = embedded_farm.settings.home
    first = _farm(["users", "create", "bot", "--role", "ops", "--token"], home).stdout.strip().splitlines()[-1]
    second = _farm(["users", "token", "bot"], home).stdout.strip().splitlines()[-1]
    assert _farm(["users", "disable", "bot"], home).exit_code == 0
    with transaction(embedded_farm.session_factory) as session:
        assert user_for_token(session, first) is None
        assert user_for_token(session, second) is None  # disabled
    assert _farm(["users", "enable", "bot"], home).exit_code == 0
    with transaction(embedded_farm.session_factory) as session:
        assert user_for_token(session, second).name == "bot"


def test_creating_on_a_new_farm_prepares_its_database(farm_home):
    result = _farm(["users", "create", "root", "--role", "admin", "--password-stdin"], farm_home,
                   input="a long enough password\n")
    assert result.exit_code == 0, result.output
    assert "root" in _farm(["users", "list"], farm_home).stdout


@pytest.mark.parametrize("args, stdin, named", [
    (["users", "create", "ana", "--role", "boss"], None, "--role"),
    (["users", "create", "ana", "--role", "admin", "--password-stdin"], "short\n", "--password-stdin (password)"),
    (["users", "create", "ana", "--role", "admin", "--password-stdin"], "\n", "--password-stdin (password)"),
    (["users", "create", "ana", "--role", "admin", "--email", "nope"], None, "--email"),
    (["users", "create", " ", "--role", "admin"], None, "NAME"),
    (["users", "token", "nobody"], None, "NAME"),
    (["users", "disable", "nobody"], None, "NAME"),
])
def test_bad_input_names_the_flag_and_writes_nothing(embedded_farm, args, stdin, named):
    home = embedded_farm.settings.home
    result = _farm(args, home, input=stdin)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {named}:"), result.stderr
    assert json.loads(_farm(["users", "list", "--json"], home).stdout) == []


def test_bad_role_is_refused_before_a_database_exists(tmp_path):
    home = tmp_path / "farm-data"
    result = _farm(["users", "create", "ana", "--role", "boss"], home)
    assert result.exit_code == 2
    assert "error: --role: 'boss' is not a role; roles: admin, campaign_manager, reviewer, ops, auditor" in result.stderr
    assert not home.exists()


def test_duplicate_name_names_the_argument(embedded_farm):
    home = embedded_farm.settings.home
    assert _farm(["users", "create", "ana", "--role", "reviewer", "--token"], home).exit_code == 0
    again = _farm(["users", "create", "ANA", "--role", "admin", "--token"], home)
    assert again.exit_code == 2
    assert "error: NAME: a user named 'ANA' exists already" in again.stderr
