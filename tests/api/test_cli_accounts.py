"""``safehaven agency | reviewer | oversight``: credentials from the command line."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from safehaven.cli import app
from safehaven.service import accounts
from safehaven.store.db import open_store, session_factory, transaction

runner = CliRunner()


def test_agency_add_list_revoke(database_url: str) -> None:
    db = ["--database-url", database_url]
    res = runner.invoke(app, ["agency", "add", "dvla", "--label", "licensing", "--json", *db])
    assert res.exit_code == 0, res.output
    made = json.loads(res.stdout)
    assert made["agreements"] == ["home-office-status-checks"]
    assert made["token"].startswith("sh_")
    factory = session_factory(open_store(database_url))
    with transaction(factory) as s:
        assert accounts.authenticate_agency(s, made["token"]) is not None
    listed = json.loads(runner.invoke(app, ["agency", "list", "--json", *db]).stdout)
    assert [(t["agency"], t["revoked_at"]) for t in listed] == [("dvla", None)]
    assert made["token"] not in json.dumps(listed)  # only the prefix is ever shown again
    assert runner.invoke(app, ["agency", "revoke", str(made["id"]), *db]).exit_code == 0
    with transaction(factory) as s:
        assert accounts.authenticate_agency(s, made["token"]) is None
    bad = runner.invoke(app, ["agency", "add", "mi5", *db])
    assert bad.exit_code == 2 and "agency: 'mi5' is not a requesting party" in bad.output
    scope = runner.invoke(app, ["agency", "add", "dvla", "--agreement", "nhs-police-tracing", *db])
    assert scope.exit_code == 2 and "agreement:" in scope.output


def test_reviewer_accounts(database_url: str) -> None:
    db = ["--database-url", database_url]
    env = {"SAFEHAVEN_PASSWORD": "a long enough password"}
    assert runner.invoke(app, ["reviewer", "add", "alice", *db], env=env).exit_code == 0
    again = runner.invoke(app, ["reviewer", "add", "alice", *db], env=env)
    assert again.exit_code == 2 and "username: 'alice' already exists" in again.output
    short = runner.invoke(app, ["oversight", "add", "olive", *db],
                          env={"SAFEHAVEN_PASSWORD": "short"})
    assert short.exit_code == 2 and "password:" in short.output
    assert runner.invoke(app, ["oversight", "add", "otto", *db], env=env).exit_code == 0
    wrong = runner.invoke(app, ["reviewer", "disable", "otto", *db])
    assert wrong.exit_code == 2 and "username: 'otto' is not a reviewer" in wrong.output
    wrong = runner.invoke(app, ["reviewer", "unlock", "otto", *db])
    assert wrong.exit_code == 2 and "username: 'otto' is not a reviewer" in wrong.output
    overseers = json.loads(runner.invoke(app, ["oversight", "list", "--json", *db]).stdout)
    assert [(o["username"], o["disabled"]) for o in overseers] == [("otto", False)]
    assert runner.invoke(app, ["reviewer", "disable", "alice", *db]).exit_code == 0
    listed = json.loads(runner.invoke(app, ["reviewer", "list", "--json", *db]).stdout)
    assert listed == [{"username": "alice", "disabled": True, "locked_until": None,
                       "locked_addresses": 0}]
    factory = session_factory(open_store(database_url))
    with transaction(factory) as s:
        assert accounts.verify_login(s, "alice", "a long enough password") is None
