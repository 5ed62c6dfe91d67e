"""A dry run of the stream for calibration: the pure decision and the matcher, no store.

Choosing ``present_in_register`` by re-running the full replay for every candidate value
would take minutes per try; the outcome of a request, though, is fully determined by the
pure decision engine, the simulated reviewer's disposition and the matcher, which this
module runs without the database (same functions, same inputs, same order).  The figures
it predicts are then confirmed by the real replay, whose numbers are the ones printed;
``docs/demo.md`` records both.  Cap counting is ignored here (the DfE stream stays far
below its cap), which is the one place the dry run could differ.

Run: ``python -m safehaven.demo.calibrate [--people N] [--set stream.param=value ...]``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections import Counter
from typing import Any

from safehaven.agreements import load_dir
from safehaven.demo.parameters import Parameters, load_parameters
from safehaven.demo.registers import build_registers
from safehaven.demo.stream import choose_purpose, generate, request_body
from safehaven.domain.decision import Outcome, decide
from safehaven.domain.request import parse_request_obj


def predict(params: Parameters, people: int) -> dict[str, Any]:
    """Predicted disclosed share per published comparison, and the matcher's confusion."""
    agreements = load_dir()
    regs = build_registers(params, people=people)
    items = generate(params, regs.health, regs.education, regs.outsiders)
    tallies: dict[str, Counter[str]] = {p.id: Counter() for p in params.published}
    confusion: Counter[str] = Counter()
    for item in items:
        wanted = [p for p in params.published
                  if p.agreement == item.agreement and p.start <= item.received_at.date() <= p.end]
        if not wanted:
            continue
        agreement = agreements.get(item.agreement)
        made_on = item.received_at.date()
        request = parse_request_obj(request_body(item, choose_purpose(agreement, made_on,
                                                                      item.case)))
        decision = decide(request, agreements, received_on=made_on, firewall_on=False)
        disclosed = False
        if decision.outcome is not Outcome.REFUSED and not (
            decision.outcome is Outcome.NEEDS_REVIEW and item.reviewer_refuses
        ):
            assert agreement is not None
            found = regs.matchers[agreement.register_kind.value].match(request.subject)
            disclosed = found.status == "matched"
            confusion[f"{item.stream}:{'present' if item.in_register else 'absent'}:"
                      f"{found.status}"] += 1
        for p in wanted:
            tallies[p.id]["received"] += 1
            tallies[p.id]["disclosed"] += disclosed
    return {
        "predicted": {
            pid: {"received": t["received"], "disclosed": t["disclosed"],
                  "share": round(t["disclosed"] / t["received"], 4) if t["received"] else None}
            for pid, t in tallies.items()
        },
        "matcher": dict(sorted(confusion.items())),
    }


def _override(params: Parameters, settings: list[str]) -> Parameters:
    data = params.model_dump(by_alias=True)
    for setting in settings:
        key, value = setting.split("=", 1)
        stream_id, name = key.split(".", 1)
        for stream in data["streams"]:
            if stream["id"] == stream_id:
                stream[name] = float(value)
    return Parameters.model_validate(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=None)
    parser.add_argument("--set", action="append", default=[], metavar="STREAM.PARAM=VALUE")
    args = parser.parse_args()
    params = _override(load_parameters(), args.set)
    with tempfile.TemporaryDirectory() as home:
        os.environ["SAFEHAVEN_HOME"] = home
        result = predict(params, args.people or params.registers.people)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
