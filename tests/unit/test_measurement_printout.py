"""The demo's closing printout, as tables: an uplift answer prints as one row (nulls as `-`, a
missing control group said), measured campaigns first; a backtest prints its would-send, its
suppressions by reason, most first, and its busiest fences by name.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fixtures.measurement_printout import backtest_lines, uplift_lines, uplift_row

AT = datetime(2026, 6, 17, 10, 0, tzinfo=UTC)
METHOD = "Newcombe hybrid score interval (95 %) …"


def answer(treated: tuple[int, int], control: tuple[int, int], **figures: Any) -> dict[str, Any]:
    def group(conversions: int, n: int) -> dict[str, Any]:
        return {"n": n, "conversions": conversions, "rate": conversions / n if n else None}

    nulls = {"uplift": None, "ci95": None, "p_value": None, "incremental_conversions": None}
    return {"goal": "visit", "window_hours": 24, "treated": group(*treated),
            "control": group(*control), "method": METHOD, "note": None, **nulls, **figures}


MEASURED = answer((64, 128), (6, 32), uplift=0.3125, ci95=[0.126, 0.443], p_value=0.0015,
                  incremental_conversions=40.0)


def test_a_measured_uplift_prints_both_groups_the_difference_its_interval_and_p_value() -> None:
    row = uplift_row("Taste the new pralines", MEASURED)
    assert row.split() == ["Taste", "the", "new", "pralines", "visit", "64/128", "0.50", "6/32",
                           "0.19", "+0.312", "[+0.126,", "+0.443]", "0.0015", "+40.0"]


def test_an_uplift_without_control_prints_dashes_and_says_why() -> None:
    row = uplift_row("Baguette of the day", answer((1, 5), (0, 0)))
    assert "1/5 0.20" in row and row.endswith("(no control group)")
    assert row.split()[7:12] == ["-"] * 5  # control, uplift, interval, p-value, incremental


def test_the_uplift_table_lists_measured_campaigns_first_then_the_method_and_their_note() -> None:
    campaigns = {"a": {"name": "Baguette of the day"}, "b": {"name": "Taste the new pralines"}}
    noted = {**MEASURED, "note": "160 of the 160 moments are less than 24 h old"}
    lines = uplift_lines(campaigns, {"a": {"visit": answer((1, 5), (0, 0))},
                                     "b": {"visit": noted, "purchase": MEASURED}})
    rows = [line for line in lines if line.startswith("  Taste") or line.startswith("  Bag")]
    assert [r.split()[0] for r in rows] == ["Taste", "Taste", "Baguette"]
    assert f"  method: {METHOD}" in lines
    assert lines[-1] == "  note (Taste the new pralines): 160 of the 160 moments are less than " \
                        "24 h old"


def test_a_backtest_prints_its_would_send_suppressions_most_first_and_fences_by_name() -> None:
    backtest = {"moments": 12, "devices": 9, "devices_reached": 7, "would_send": 7,
                "suppressed": {"cap": 1, "holdout": 4, "consent": 0},
                "replayed": {"devices": 10, "batches": 30, "pings": 900},
                "by_geofence": [{"geofence_id": "f-1", "moments": 12, "would_send": 7,
                                 "suppressed": {"holdout": 4, "cap": 1}}]}
    proposal = {"name": "Treat", "trigger": {"kind": "enter", "tags": ["bakery", "chocolate"]},
                "priority": 12, "holdout_percent": 10}
    lines = backtest_lines(backtest, proposal, (AT, AT + timedelta(minutes=1)), 16,
                           {"f-1": "Boulangerie Cler · shop"})
    text = "\n".join(lines)
    assert "would send 7 pushes to 7 devices" in text
    assert "suppressed: holdout 4, cap 1\n" in text
    assert "10:00:00-10:01:00 UTC" in text and "16 active campaigns" in text
    assert lines[-1].split()[:4] == ["Boulangerie", "Cler", "·", "shop"]
