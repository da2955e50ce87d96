"""`cinema admin reservations` and `cinema admin sales` (issue 16), the installed command as a
manager runs it, against the whole system in a scratch folder through its ingress: who booked a
screening (by state), the sales of a movie and of a screening as tables and as the API's JSON,
and a customer refused.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from cinema_cli.main import app
from scripts.stack import edge
from tests.browser.stack import Stack, eventually, scratch_stack
from tests.cli.test_cinema_command import Cli

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with scratch_stack("cli-admin") as running:
        yield running


@pytest.fixture(scope="module")
def cli(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    return Cli(stack.base, tmp_path_factory.mktemp("cinema-admin-config"))


def test_help_of_the_manager_commands() -> None:
    runner = CliRunner()
    for command in (["admin", "reservations"], ["admin", "sales"]):
        done = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "120"})
        assert done.exit_code == 0 and f"Usage: cinema {' '.join(command)}" in done.output, done.output


def test_a_manager_sees_who_booked_and_the_sales(cli: Cli, stack: Stack) -> None:
    cli.login(edge.DEMO_MANAGER)
    movie = next(m for m in cli.json("movies") if m["title"] == "Parasite")
    screening_id = cli.json("screenings", "Parasite")[0]["id"]
    customer = stack.token(edge.DEMO_CUSTOMER)
    kept = stack.reserve(customer, screening_id, stack.free_seats(screening_id, 2))
    dropped = stack.reserve(customer, screening_id, stack.free_seats(screening_id, 1))
    cancelled = httpx.post(
        f"{stack.base}/v1/reservations/{dropped['id']}:cancel",
        headers={"Authorization": f"Bearer {customer}"},
        json={"reason": "plans changed"},
        timeout=30,
    )
    assert cancelled.status_code == 200, cancelled.text

    listed = cli.json("admin", "reservations", screening_id)
    by_id = {r["id"]: r for r in listed}
    assert by_id[kept["id"]]["state"] == "RESERVATION_STATE_CONFIRMED"
    assert by_id[dropped["id"]]["state"] == "RESERVATION_STATE_CANCELLED"
    only_cancelled = cli.json("admin", "reservations", screening_id, "--state", "cancelled")
    assert dropped["id"] in {r["id"] for r in only_cancelled}
    assert {r["state"] for r in only_cancelled} == {"RESERVATION_STATE_CANCELLED"}
    table = cli("admin", "reservations", screening_id).stdout
    assert kept["id"] in table and " ".join(kept["seats"]) in table and "plans changed" in table

    manager = stack.token(edge.DEMO_MANAGER)

    def sales_settled() -> dict[str, Any] | None:
        answer = cli.json("admin", "sales", "--screening", screening_id)
        sales = answer["screening"]["sales"]
        return answer if int(sales.get("refundCount", 0)) >= 1 and int(sales.get("seatsSold", 0)) >= 2 else None

    one = eventually("the refund in the screening's sales", sales_settled, timeout=60)
    rest = httpx.get(
        f"{stack.base}/v1/sales/screenings/{screening_id}", headers={"Authorization": f"Bearer {manager}"}, timeout=30
    ).json()
    assert one["screening"]["sales"]["seatsSold"] == rest["screening"]["sales"]["seatsSold"]
    whole = cli.json("admin", "sales", "Parasite")
    assert whole["movieId"] == movie["id"]
    assert screening_id in {s["screeningId"] for s in whole["screenings"]}
    sold = int(whole["sales"]["seatsSold"])
    assert sold == sum(int(s["sales"].get("seatsSold", 0)) for s in whole["screenings"]) and sold >= 2
    shown = cli("admin", "sales", "parasite").stdout  # by title, any case
    assert "Sales of Parasite" in shown and "Total" in shown and "Sales hour by hour" in shown
    assert f" {sold} " in shown.split("Total", 1)[1].splitlines()[0] + " "


def test_the_manager_commands_refuse_and_explain(cli: Cli) -> None:
    cli.login(edge.DEMO_MANAGER)
    assert "--state must be one of" in cli("admin", "reservations", str(uuid.uuid4()), "--state", "paid", code=2).stderr
    assert cli("admin", "reservations", str(uuid.uuid4()), code=5).stderr.startswith("error: ")
    assert "name a MOVIE or give --screening" in cli("admin", "sales", code=2).stderr
    assert cli("admin", "sales", "--screening", str(uuid.uuid4()), code=5).returncode == 5
    cli.login(edge.DEMO_CUSTOMER)
    refused = cli("admin", "sales", "Parasite", code=4)
    assert "demo-customer is not a manager" in refused.stderr
    assert cli("admin", "reservations", str(uuid.uuid4()), code=4).returncode == 4
    assert json.loads(cli("movies", "--json").stdout)  # the customer's own commands still work
