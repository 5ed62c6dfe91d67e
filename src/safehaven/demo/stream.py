"""The request stream: who asks about whom, when, with what grounds and what errors.

The stream is generated once from the parameters and a seed, and is independent of policy:
a what-if replays exactly the same requests (same people, same errors, same reviewer
dispositions) under other terms.  The only policy-dependent choice, which purpose a
requester cites, is made at replay time by :func:`choose_purpose`, the way a requester
reads the agreement in force on the day it writes.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import numpy as np
import pandas as pd

from safehaven.demo.parameters import ErrorRates, Parameters, Stream
from safehaven.domain.agreement import Agreement

Case = Literal["immigration", "serious", "welfare", "police", "status"]
_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_INWARD = "ABDEFGHJLNPQRSTUWXYZ"
_POLICE_OFFENCES = (
    ("Rape (Sexual Offences Act 2003 s.1)", True),
    ("Murder", True),
    ("Grievous bodily harm with intent (OAPA 1861 s.18)", True),
    ("Robbery (Theft Act 1968 s.8)", True),
    ("Theft (Theft Act 1968 s.1)", False),
)


@dataclass(frozen=True)
class Item:
    """One request of the stream, before a purpose is chosen."""

    seq: int
    stream: str
    received_at: datetime
    requester: str
    agreement: str
    case: Case
    subject: dict[str, Any]
    grounds: dict[str, Any]
    fields: tuple[str, ...]
    in_register: bool
    reviewer_refuses: bool
    exempt: bool
    review_delays: tuple[timedelta, timedelta]

    @property
    def request_id(self) -> str:
        return f"demo-{self.stream}-{self.seq:06d}"


def choose_purpose(agreement: Agreement | None, made_on: date, case: Case) -> str:
    """The narrowest purpose covering the case that the agreement permits on the day.

    A serious-crime case is asked under ``deportation-serious-crime`` where that purpose
    is in force (it needs two reviewers); anything else falls back to the general
    purpose, which is what a requester does when the narrower one does not exist yet, and
    what it keeps doing after the agreement has narrowed (those requests are refused and
    counted: the report shows demand that the new terms turned away).
    """
    if case == "police":
        return "police-serious-crime"
    if case == "status":
        return "status-check"
    if agreement is not None:
        live = agreement.purposes_on(made_on)
        if case == "serious" and "deportation-serious-crime" in live:
            return "deportation-serious-crime"
        if case == "welfare" and "welfare-protection" in live:
            return "welfare-protection"
    return "immigration-offence-trace"


def request_body(item: Item, purpose: str) -> dict[str, Any]:
    return {
        "request_id": item.request_id,
        "requester": item.requester,
        "agreement": item.agreement,
        "purpose": purpose,
        "made_on": item.received_at.date().isoformat(),
        "subject": item.subject,
        "grounds": item.grounds,
        "fields": list(item.fields),
    }


def _months(start: str, end: str) -> list[tuple[int, int]]:
    y, m = int(start[:4]), int(start[5:])
    ey, em = int(end[:4]), int(end[5:])
    out = []
    while (y, m) <= (ey, em):
        out.append((y, m))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def arrival_times(rng: np.random.Generator, stream: Stream, lo: date, hi: date) -> list[datetime]:
    """Poisson counts per month, spread over the month's days between 08:00 and 18:00."""
    times: list[datetime] = []
    for arrival in stream.arrivals:
        for y, m in _months(arrival.start, arrival.end):
            days = calendar.monthrange(y, m)[1]
            n = int(rng.poisson(arrival.per_month))
            day = rng.integers(1, days + 1, n)
            secs = rng.integers(8 * 3600, 18 * 3600, n)
            for d, s in zip(day, secs, strict=True):
                at = datetime(y, m, int(d), tzinfo=UTC) + timedelta(seconds=int(s))
                if lo <= at.date() <= hi:
                    times.append(at)
    times.sort()
    return times


def _typo(rng: np.random.Generator, text: str) -> str:
    if len(text) < 3:
        return text
    i = int(rng.integers(1, len(text) - 1))
    letter = _LETTERS[int(rng.integers(0, 26))]
    kind = int(rng.integers(0, 3))
    if kind == 0:
        return text[:i] + letter + text[i + 1 :]
    if kind == 1:
        return text[:i] + text[i + 1 :]
    return text[:i] + text[i + 1] + text[i] + text[i + 2 :]


def _valid(day: str) -> bool:
    try:
        date.fromisoformat(day)
    except ValueError:
        return False
    return True


def describe(rng: np.random.Generator, person: Mapping[str, Any], rates: ErrorRates,
             mult: float, stream: Stream, pool: np.ndarray[Any, Any]) -> dict[str, Any]:
    """The requester's description of ``person``: what it knows, with its errors."""

    def hit(rate: float) -> bool:
        return bool(rng.random() < min(1.0, rate * mult))

    family = str(person["family"])
    if hit(rates.family_changed):
        family = str(pool[int(rng.integers(0, len(pool)))][0])
    elif hit(rates.family_typo):
        family = _typo(rng, family).title()
    subject: dict[str, Any] = {"family": family}
    given = person.get("given")
    if given is not None and not hit(rates.given_missing):
        subject["given"] = _typo(rng, str(given)).title() if hit(rates.given_typo) else given
    if person.get("gender") in ("male", "female") and rng.random() < 0.7:
        subject["gender"] = person["gender"]
    dob = str(person["birthdate"])
    if hit(rates.dob_swapped) and int(dob[8:10]) <= 12 and dob[5:7] != dob[8:10]:
        dob = f"{dob[:5]}{dob[8:10]}-{dob[5:7]}"
    elif hit(rates.dob_wrong):
        pos = int(rng.choice([3, 6, 9]))
        candidate = dob[:pos] + str(int(rng.integers(0, 10))) + dob[pos + 1 :]
        dob = candidate if _valid(candidate) else dob
    subject["birthdate"] = dob
    if stream.nhs_number_share and rng.random() < stream.nhs_number_share:
        subject["nhs_number"] = person["nhs_number"]
    # The address it searches with is the address it knows.
    draw = rng.random()
    known: dict[str, Any] | None = None
    if draw < stream.address_known_share:
        known = {"line": str(person["address_line1"]), "postalcode": str(person["postcode"])}
    elif draw < stream.address_known_share + stream.stale_address_share:
        previous = person.get("previous_postcode")
        stale = previous or str(pool[int(rng.integers(0, len(pool)))][1])
        known = {"postalcode": str(stale)}
    if known is not None:
        postcode = known["postalcode"]
        if hit(rates.postcode_typo):
            postcode = postcode[:-1] + _INWARD[int(rng.integers(0, len(_INWARD)))]
        subject["address-postalcode"] = postcode
        subject["known_address"] = known
    return subject


def _grounds(rng: np.random.Generator, stream: Stream, case: Case, made_on: date,
             missing: bool) -> dict[str, Any]:
    if case == "status":
        reference = f"APP-{int(rng.integers(0, 10_000_000)):07d}"
        return {} if missing else {"application_reference": reference}
    if case == "police":
        serious = bool(rng.random() < stream.serious_crime_share)
        offences = [o for o, grave in _POLICE_OFFENCES if grave == serious]
        offence = offences[int(rng.integers(0, len(offences)))]
        old = rng.random() < stream.old_offence_share
        age_days = int(rng.integers(6 * 365, 12 * 365)) if old else int(rng.integers(10, 4 * 365))
        return {"offence": offence, "serious_crime": serious,
                "offence_date": (made_on - timedelta(days=age_days)).isoformat()}
    grounds: dict[str, Any] = {
        "offence": "Immigration Act 1971 s.24(1)(b) (overstaying leave)",
        "lost_contact": True,
        "believed_in_uk": True,
    }
    if not missing:
        grounds["other_attempts"] = ["Reporting centre contacted", "Last known address visited"]
    if case == "serious":
        grounds.update({
            "offence": "Conviction for a serious offence; deportation under consideration",
            "serious_crime": True,
            "deportation_considered": True,
            "offence_date": (made_on - timedelta(days=int(rng.integers(60, 1400)))).isoformat(),
        })
    if case == "welfare":
        grounds["welfare_concern"] = "A child at risk of harm"
    return grounds


def _case(rng: np.random.Generator, stream: Stream) -> Case:
    if stream.register_name == "immigration-status":
        return "status"
    if stream.requesters[0] != "home-office":
        return "police"
    draw = rng.random()
    if draw < stream.serious_crime_share:
        return "serious"
    if draw < stream.serious_crime_share + stream.welfare_share:
        return "welfare"
    return "immigration"


_PERSON_COLS = ["record_id", "nhs_number", "family", "given", "gender", "birthdate",
                "address_line1", "postcode", "previous_postcode"]


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    sub = df[_PERSON_COLS].astype(object).where(df[_PERSON_COLS].notna(), None)
    records: list[dict[str, Any]] = sub.to_dict("records")
    return records


def _adults(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["birthdate"] <= "1998-12-31"]


def generate(params: Parameters, health: pd.DataFrame, education: pd.DataFrame,
             outsiders: pd.DataFrame) -> list[Item]:
    """The whole stream, in order of arrival; deterministic for the parameters' seed."""
    lo, hi = params.replay.start, params.replay.end
    lo_edu = params.registers.education_born_from.isoformat()
    hi_edu = params.registers.education_born_to.isoformat()
    pools = {
        "health": (_adults(health), _adults(outsiders)),
        "immigration-status": (_adults(health), _adults(outsiders)),
        "education": (education, outsiders[(outsiders["birthdate"] >= lo_edu)
                                           & (outsiders["birthdate"] <= hi_edu)]),
    }
    step = max(1, len(health) // 5000)
    name_pool = health[["family", "postcode"]].to_numpy(dtype=object)[::step]
    items: list[tuple[datetime, int, Item]] = []
    d_lo, d_hi = params.review_delay_days
    for k, stream in enumerate(params.streams):
        rng = np.random.default_rng([params.seed, k])
        times = arrival_times(rng, stream, lo, hi)
        present_df, absent_df = pools[stream.register_name]
        n = len(times)
        present = rng.random(n) < stream.present_in_register
        n_in = int(present.sum())
        in_rows = rng.choice(len(present_df), n_in, replace=n_in > len(present_df))
        out_rows = rng.choice(len(absent_df), n - n_in, replace=(n - n_in) > len(absent_df))
        people_in = _records(present_df.iloc[in_rows])
        people_out = _records(absent_df.iloc[out_rows])
        it_in, it_out = iter(people_in), iter(people_out)
        for seq, at in enumerate(times):
            person = next(it_in) if present[seq] else next(it_out)
            case = _case(rng, stream)
            missing = bool(rng.random() < stream.grounds_missing_share)
            fields = list(stream.fields)
            if stream.extra_field and rng.random() < stream.extra_field_share:
                fields.append(stream.extra_field)
            requesters = stream.requesters
            agreement = stream.agreement_on(at.date())
            if agreement is None:
                continue
            item = Item(
                seq=seq,
                stream=stream.id,
                received_at=at,
                requester=requesters[int(rng.integers(0, len(requesters)))],
                agreement=agreement,
                case=case,
                subject=describe(rng, person, params.error_rates, stream.error_multiplier,
                                 stream, name_pool),
                grounds=_grounds(rng, stream, case, at.date(), missing),
                fields=tuple(fields),
                in_register=bool(present[seq]),
                reviewer_refuses=bool(rng.random() < stream.reviewer_refusal),
                exempt=bool(rng.random() < stream.exemption_share),
                review_delays=(
                    timedelta(days=int(rng.integers(d_lo, d_hi + 1)),
                              hours=int(rng.integers(0, 6))),
                    timedelta(days=int(rng.integers(0, 2)), hours=int(rng.integers(1, 6))),
                ),
            )
            items.append((at, k, item))
    items.sort(key=lambda t: (t[0], t[1], t[2].seq))
    return [item for _, _, item in items]
