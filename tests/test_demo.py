"""`labes demo`: the data `make run` serves, and what a newcomer is told to try with it."""

from __future__ import annotations

from sqlalchemy import func, select

from labes.cli import app
from labes.registry.models import Facility, Member, Professional
from labes.security.models import Agent


def test_the_demo_loads_agents_families_cards_and_a_point_of_care(cli_runner, committed, keys_dir, monkeypatch,
                                                                 tmp_path):
    monkeypatch.setenv("LABES_KEYS_DIR", str(keys_dir))
    monkeypatch.chdir(tmp_path)  # the demo writes the virtual cards into ./var/cards

    loaded = cli_runner.invoke(app, ["demo", "--out", str(tmp_path / "demo")])

    assert loaded.exit_code == 0, loaded.output
    assert "Point of care (virtual cards in var/cards/, PIN 1234" in loaded.output
    for step in ("labes pos rights", "labes pos sheet", "labes pos dispense", "labes payments run", "labes payments late"):
        assert step in loaded.output
    assert all((tmp_path / "var" / "cards" / f"{name}.card").is_file() for name in ("doctor", "pharmacist", "patient"))
    with committed() as session:
        assert session.scalar(select(func.count()).select_from(Member)) == 300
        assert set(session.scalars(select(Agent.username))) >= {"clerk", "reviewer"}
        # Providers come with the bank accounts the fund pays into (a few, as in life, without one yet).
        accounts = session.execute(select(func.count(Facility.iban), func.count(Facility.id))).one()
        assert 0.9 * accounts[1] <= accounts[0] <= accounts[1]
        assert session.scalar(select(func.count(Professional.iban)).where(Professional.sector == "private")) > 0

    again = cli_runner.invoke(app, ["demo", "--out", str(tmp_path / "demo")])

    assert again.exit_code == 0, again.output  # idempotent: `make run` loads it at every start
    with committed() as session:
        assert session.scalar(select(func.count()).select_from(Member)) == 300
