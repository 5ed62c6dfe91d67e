"""A synthetic UK register and a matching set of tracing requests with ground truth.

Tests, benchmarks and demos must never touch real people, yet the matcher has to be
tried on what makes real linkage hard: very common names (Smith, Jones, Oliver), people
who share a household, a family name and sometimes a birthday (twins), people who moved,
and requests that are wrong in the ways requests are wrong.  Everything is drawn with
numpy from one seeded generator, whole columns at a time, so ten million people take
minutes and the same seed always gives the same register.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from faker.providers.address.en_GB import Provider as AddressProvider
from faker.providers.person.en_GB import Provider as PersonProvider

from safehaven.matching.person import NICKNAMES
from safehaven.matching.register import REGISTER_SCHEMA

REFERENCE_DATE = date(2025, 1, 1)
_INWARD_LETTERS = np.array(list("ABDEFGHJLNPQRSTUWXYZ"))
_STREET_SUFFIXES = ("Road", "Street", "Lane", "Avenue", "Close", "Drive", "Way", "Gardens",
                    "Crescent", "Place", "Grove", "Terrace", "Court", "Hill", "Park", "Row")
_TREES = ("Oak", "Ash", "Elm", "Beech", "Birch", "Willow", "Holly", "Hazel", "Cedar",
          "Rowan", "Maple", "Larch", "Yew", "Alder", "Poplar", "Chestnut")
_SYLLABLES_A = ("Ab", "Al", "Ash", "Bar", "Bel", "Black", "Brad", "Brook", "Bur", "Car",
                "Chad", "Col", "Cor", "Dal", "Dar", "Den", "Dun", "Ed", "El", "Far", "Fen",
                "Gar", "Glen", "Gold", "Green", "Hal", "Har", "Hart", "Hol", "Kel", "Ken",
                "Lang", "Lin", "Lock", "Mar", "Mel", "Mor", "Nor", "Pen", "Ral", "Red",
                "Ros", "Rad", "Sal", "Sed", "Shel", "Stan", "Thorn", "Tre", "Wal", "War",
                "Wes", "Whit", "Win", "Wood", "Wy", "Ox", "Pres", "Quin", "Ug")
_SYLLABLES_B = ("bury", "by", "croft", "dale", "den", "don", "field", "ford", "gate", "ham",
                "hurst", "ing", "ington", "land", "ley", "lock", "low", "man", "mer", "more",
                "ney", "ridge", "shaw", "son", "stead", "ston", "thorpe", "ton", "well",
                "wick", "win", "worth", "er", "ett", "ock", "ard", "ie", "ow")
_SYLLABLES_MID = ("er", "in", "el", "an", "or", "ing", "ert", "ow")
_TOWN_SUFFIXES = ("ton", "bury", "ford", "ham", "field", "chester", "by", "mouth", "wich",
                  "stead", "bridge", "minster")
_DIAGNOSES = ("E11", "I10", "J45", "F32", "F41", "M54", "K21", "E78", "N39", "G43", "B20",
              "O80", "F20", "C50")
_MEDICATIONS = ("metformin", "amlodipine", "salbutamol", "sertraline", "omeprazole",
                "atorvastatin", "levothyroxine", "ramipril", "citalopram")


def _zipf_weights(n: int, s: float) -> npt.NDArray[np.float64]:
    w: npt.NDArray[np.float64] = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** s
    out: npt.NDArray[np.float64] = w / w.sum()
    return out


def _masked(mask: npt.NDArray[np.bool_], values: npt.NDArray[np.object_]
            ) -> npt.NDArray[np.object_]:
    """``values`` where ``mask``, else None (a nullable column)."""
    out = np.full(len(mask), None, dtype=object)
    out[mask] = values[mask]
    return out


@dataclass(frozen=True)
class NameTables:
    family: npt.NDArray[np.object_]
    family_p: npt.NDArray[np.float64]
    male: npt.NDArray[np.object_]
    male_p: npt.NDArray[np.float64]
    female: npt.NDArray[np.object_]
    female_p: npt.NDArray[np.float64]


def name_tables() -> NameTables:
    """Surnames: Faker's en_GB frequencies (75 % of people) plus a long synthetic tail.

    Forenames: Faker's en_GB lists with Zipf-shaped popularity, so a few names
    (the Olivers and Sarahs) are very common and most are rare.
    """
    rng = np.random.default_rng(20170101)  # fixed: the population, not the sample
    common = list(PersonProvider.last_names.items())
    fam = [name for name, _ in common]
    fam_w = np.array([w for _, w in common], dtype=np.float64)
    fam_w = 0.75 * fam_w / fam_w.sum()
    tail = sorted(({a + b for a in _SYLLABLES_A for b in _SYLLABLES_B}
                   | {a + m + b for a in _SYLLABLES_A for m in _SYLLABLES_MID
                      for b in _SYLLABLES_B}) - set(fam))
    tail_arr = np.array(tail, dtype=object)
    rng.shuffle(tail_arr)
    tail_w = 0.25 * _zipf_weights(len(tail_arr), 0.4)
    family = np.concatenate([np.array(fam, dtype=object), tail_arr])
    family_p = np.concatenate([fam_w, tail_w])

    def forenames(names: Any) -> tuple[npt.NDArray[np.object_], npt.NDArray[np.float64]]:
        arr = np.array(sorted(set(names)), dtype=object)
        rng.shuffle(arr)
        return arr, _zipf_weights(len(arr), 0.7)

    male, male_p = forenames(PersonProvider.first_names_male)
    female, female_p = forenames(PersonProvider.first_names_female)
    return NameTables(family, family_p, male, male_p, female, female_p)


def _postcode_pool(rng: np.random.Generator, n: int) -> tuple[npt.NDArray[np.object_],
                                                              npt.NDArray[np.object_]]:
    """Real postcode areas, plausible districts; returns (postcodes, town per postcode)."""
    areas = np.array(sorted(AddressProvider.POSTAL_ZONES), dtype=object)
    area_w = rng.gamma(2.0, 1.0, len(areas))
    area_w /= area_w.sum()
    towns = {a: f"{_SYLLABLES_A[i % len(_SYLLABLES_A)]}{_TOWN_SUFFIXES[i % 12]}"
             for i, a in enumerate(areas)}
    m = int(n * 1.3) + 10
    area = areas[rng.choice(len(areas), m, p=area_w)]
    district = rng.integers(1, 30, m)
    sector = rng.integers(0, 10, m)
    l1 = _INWARD_LETTERS[rng.integers(0, len(_INWARD_LETTERS), m)]
    l2 = _INWARD_LETTERS[rng.integers(0, len(_INWARD_LETTERS), m)]
    codes = pd.Series(area).str.cat([pd.Series(district).astype(str), pd.Series([" "] * m),
                                     pd.Series(sector).astype(str), pd.Series(l1),
                                     pd.Series(l2)])
    uniq = codes.drop_duplicates().to_numpy(dtype=object)[:n]
    town = np.array([towns[p[:2] if p[1].isalpha() else p[:1]] for p in uniq], dtype=object)
    return uniq, town


def nhs_numbers(rng: np.random.Generator, n: int) -> npt.NDArray[np.object_]:
    """``n`` distinct valid NHS numbers in the 400–499 million range, shuffled."""
    out: list[npt.NDArray[np.int64]] = []
    have = 0
    start = 400_000_000
    while have < n:
        step = rng.integers(1, 8, int((n - have) * 1.2) + 16)
        base = start + np.cumsum(step)
        base = base[base < 500_000_000]
        start = int(base[-1]) if len(base) else start
        digits = (base[:, None] // 10 ** np.arange(8, -1, -1)) % 10
        total = digits @ np.arange(10, 1, -1)
        check = 11 - total % 11
        check = np.where(check == 11, 0, check)
        keep = check != 10
        nums = base[keep] * 10 + check[keep]
        out.append(nums)
        have += len(nums)
    allnums = np.concatenate(out)[:n]
    rng.shuffle(allnums)
    return allnums.astype(str).astype(object)


def _dates(days: npt.NDArray[np.int64]) -> npt.NDArray[np.object_]:
    base = np.datetime64(REFERENCE_DATE.isoformat(), "D")
    return np.datetime_as_string(base - days.astype("timedelta64[D]")).astype(object)


def synth_register(people: int, seed: int = 0) -> pd.DataFrame:
    """A register of ``people`` synthetic residents, deterministic for a given seed."""
    rng = np.random.default_rng(seed)
    names = name_tables()
    n = people
    # Households of 1..6 sharing a postcode, an address and (mostly) a family name.
    sizes = rng.choice(np.arange(1, 7), int(n / 2.0) + 16,
                       p=[0.30, 0.34, 0.15, 0.13, 0.06, 0.02])
    sizes = sizes[: int(np.searchsorted(np.cumsum(sizes), n)) + 1]
    hh = np.repeat(np.arange(len(sizes)), sizes)[:n]
    nh = len(sizes)
    first_in_hh = np.r_[True, hh[1:] != hh[:-1]]
    pos_in_hh = np.arange(n) - np.flatnonzero(first_in_hh)[hh]

    postcodes, towns = _postcode_pool(rng, max(nh // 6, 10))
    hh_pc = rng.integers(0, len(postcodes), nh)
    streets = np.array([f"{s} {suf}" for s in
                        np.concatenate([names.family[:400], np.array(_TREES, dtype=object)])
                        for suf in _STREET_SUFFIXES], dtype=object)
    pc_street = rng.integers(0, len(streets), len(postcodes))
    hh_num = rng.integers(1, 240, nh)
    hh_line1 = pd.Series(hh_num.astype(str)).str.cat(
        pd.Series(streets[pc_street[hh_pc]]), sep=" ").to_numpy(dtype=object)
    flat = rng.random(nh) < 0.12
    hh_line2 = _masked(flat, pd.Series(rng.integers(1, 40, nh).astype(str)).radd("Flat ")
                       .to_numpy(dtype=object))
    hh_family = names.family[rng.choice(len(names.family), nh, p=names.family_p)]

    own_family = (rng.random(n) < 0.15) & ~first_in_hh
    family = hh_family[hh].copy()
    k = int(own_family.sum())
    family[own_family] = names.family[rng.choice(len(names.family), k, p=names.family_p)]

    gender_draw = rng.random(n)
    gender = np.where(gender_draw < 0.495, "male",
                      np.where(gender_draw < 0.99, "female",
                               np.where(gender_draw < 0.995, "other", "unknown"))).astype(object)
    male = gender == "male"
    given = names.female[rng.choice(len(names.female), n, p=names.female_p)]
    given[male] = names.male[rng.choice(len(names.male), int(male.sum()), p=names.male_p)]
    no_given = rng.random(n) < 0.002
    given[no_given] = None

    # Ages: adults head households; later members are children half the time.
    child = (pos_in_hh >= 2) & (rng.random(n) < 0.6)
    age_days = np.where(child, rng.integers(0, 18 * 365, n),
                        rng.integers(18 * 365, 95 * 365, n)).astype(np.int64)
    # Twins: in 1.5 % of households of 3+, the third member is the second's twin.
    twin = (pos_in_hh == 2) & (sizes[hh] >= 3) & (rng.random(n) < 0.015 * 3)
    twin_idx = np.flatnonzero(twin)
    age_days[twin_idx] = age_days[twin_idx - 1]
    family[twin_idx] = family[twin_idx - 1]
    birthdate = _dates(age_days)

    moved = rng.random(n) < 0.15
    prev = postcodes[rng.integers(0, len(postcodes), n)]
    previous_postcode = _masked(moved, prev)

    practices = np.array([f"{chr(65 + i % 26)}{81000 + i:05d}"
                          for i in range(max(len(postcodes) // 40, 1))], dtype=object)
    gp = practices[(hh_pc[hh] * 7919) % len(practices)]
    reg_days = (age_days * rng.random(n)).astype(np.int64)
    registered_on = _dates(np.minimum(reg_days, 35 * 365))

    diag = rng.random(n) < 0.3
    diagnosis = _masked(diag, np.array(_DIAGNOSES, dtype=object)[
        rng.integers(0, len(_DIAGNOSES), n)])
    meds = rng.random(n) < 0.25
    medication = _masked(meds, np.array(_MEDICATIONS, dtype=object)[
        rng.integers(0, len(_MEDICATIONS), n)])

    df = pd.DataFrame({
        "record_id": pd.Series(np.arange(1, n + 1)).astype(str).str.zfill(9).radd("R")
        .to_numpy(dtype=object),
        "nhs_number": nhs_numbers(rng, n),
        "family": family,
        "birthdate": birthdate,
        "address_line1": hh_line1[hh],
        "postcode": postcodes[hh_pc[hh]],
        "given": given,
        "gender": gender,
        "address_line2": hh_line2[hh],
        "address_line3": towns[hh_pc[hh]],
        "previous_postcode": previous_postcode,
        "gp_practice": gp,
        "registered_on": registered_on,
        "deregistered_on": None,
        "diagnosis": diagnosis,
        "medication": medication,
    })
    for col in REGISTER_SCHEMA.names:
        if col not in df.columns:
            df[col] = None
    return df[list(REGISTER_SCHEMA.names)]


def write_register(df: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".csv":
        df.to_csv(path, index=False)
        return
    table = pa.Table.from_pandas(df, schema=REGISTER_SCHEMA, preserve_index=False)
    pq.write_table(table, path, compression="zstd")


# -- requests ------------------------------------------------------------------------------

_NICKS_OF: dict[str, list[str]] = {}
for _nick, _canon in NICKNAMES.items():
    if _nick != _canon:
        _NICKS_OF.setdefault(_canon, []).append(_nick)

#: Error model: probability of each independent error in a request.
ERROR_RATES = {
    "family_typo": 0.06,
    "family_changed": 0.02,
    "given_typo": 0.05,
    "given_nickname": 0.06,
    "given_missing": 0.06,
    "dob_swapped": 0.04,
    "dob_typo": 0.03,
    "old_postcode": 0.10,
    "postcode_missing": 0.10,
    "postcode_typo": 0.03,
    "postcode_unrelated": 0.03,
    "gender_missing": 0.30,
}
NHS_NUMBER_RATE = 0.10


def _typo(rng: np.random.Generator, text: str) -> str:
    if len(text) < 3:
        return text
    i = int(rng.integers(1, len(text) - 1))
    kind = int(rng.integers(0, 4))
    letters = "abcdefghijklmnopqrstuvwxyz"
    if kind == 0:  # substitution
        return text[:i] + letters[int(rng.integers(0, 26))] + text[i + 1:]
    if kind == 1:  # deletion
        return text[:i] + text[i + 1:]
    if kind == 2:  # insertion
        return text[:i] + letters[int(rng.integers(0, 26))] + text[i:]
    return text[:i] + text[i + 1] + text[i] + text[i + 2:]  # transposition


def _valid_iso(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def corrupt(rng: np.random.Generator, person: dict[str, Any], names: NameTables,
            pool: npt.NDArray[np.object_] | None = None) -> tuple[dict[str, Any], list[str]]:
    """A request subject for ``person`` with realistic errors; returns (subject, errors).

    ``pool`` is a set of postcodes to draw an unrelated (stale, long-ago) address from.
    """
    errors: list[str] = []
    r = ERROR_RATES
    family = str(person["family"])
    if rng.random() < r["family_changed"]:
        family = str(names.family[rng.choice(len(names.family), p=names.family_p)])
        errors.append("family_changed")
    elif rng.random() < r["family_typo"]:
        family = _typo(rng, family)
        errors.append("family_typo")
    subject: dict[str, Any] = {"family": family}
    given = person.get("given")
    if given is not None and rng.random() >= r["given_missing"]:
        nicks = _NICKS_OF.get(str(given).upper())
        if nicks and rng.random() < r["given_nickname"] * 4:
            given = nicks[int(rng.integers(0, len(nicks)))].title()
            errors.append("given_nickname")
        elif rng.random() < r["given_typo"]:
            given = _typo(rng, str(given))
            errors.append("given_typo")
        subject["given"] = given
    elif given is not None:
        errors.append("given_missing")
    if person.get("gender") in ("male", "female") and rng.random() >= r["gender_missing"]:
        subject["gender"] = person["gender"]
    dob = str(person["birthdate"])
    if rng.random() < r["dob_swapped"] and int(dob[8:10]) <= 12 and dob[5:7] != dob[8:10]:
        dob = f"{dob[:5]}{dob[8:10]}-{dob[5:7]}"
        errors.append("dob_swapped")
    elif rng.random() < r["dob_typo"]:
        pos = int(rng.choice([3, 6, 9]))
        cand = dob[:pos] + str(int(rng.integers(0, 10))) + dob[pos + 1:]
        if _valid_iso(cand) and cand != dob:
            dob = cand
            errors.append("dob_typo")
    subject["birthdate"] = dob
    if rng.random() < r["postcode_missing"]:
        errors.append("postcode_missing")
    elif person.get("previous_postcode") and rng.random() < r["old_postcode"] * 4:
        subject["address-postalcode"] = person["previous_postcode"]
        errors.append("old_postcode")
    elif rng.random() < r["postcode_unrelated"] and pool is not None:
        subject["address-postalcode"] = str(pool[int(rng.integers(0, len(pool)))])
        errors.append("postcode_unrelated")
    elif rng.random() < r["postcode_typo"]:
        pc = str(person["postcode"])
        letter = str(_INWARD_LETTERS[int(rng.integers(0, len(_INWARD_LETTERS)))])
        subject["address-postalcode"] = pc[:-1] + letter
        errors.append("postcode_typo" if letter != pc[-1] else "")
        errors = [e for e in errors if e]
    else:
        subject["address-postalcode"] = person["postcode"]
    if rng.random() < NHS_NUMBER_RATE:
        subject["nhs_number"] = person["nhs_number"]
    return subject, errors


def request_envelope(request_id: str, subject: dict[str, Any]) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "requester": "metropolitan-police",
        "agreement": "nhs-police-tracing",
        "purpose": "police-serious-crime",
        "made_on": "2024-06-03",
        "subject": subject,
        "grounds": {"offence": "Robbery (Theft Act 1968 s.8)",
                    "offence_date": "2024-01-15", "serious_crime": True},
        "fields": ["address", "address-postalcode"],
    }


def synth_requests(register: pd.DataFrame, count: int, seed: int = 0,
                   absent_share: float = 0.2) -> Iterator[tuple[dict[str, Any], str | None,
                                                               list[str]]]:
    """(request, true record id or None, errors) for ``count`` requests.

    ``absent_share`` of them are about people who are not in the register (drawn from a
    separate synthetic population with the same name and date distributions).
    """
    rng = np.random.default_rng([seed, 1])
    names = name_tables()
    absent_n = round(count * absent_share)
    present_n = count - absent_n
    rows = rng.choice(len(register), present_n, replace=False)
    outsiders = synth_register(max(absent_n, 1) * 3, seed=seed + 7919)
    outsiders = outsiders[~outsiders["nhs_number"].isin(set(register["nhs_number"]))]
    pool = register["postcode"].to_numpy(dtype=object)[:: max(1, len(register) // 5000)]
    source = [(register.iloc[int(i)], True) for i in rows]
    source += [(outsiders.iloc[j], False) for j in range(absent_n)]
    order = rng.permutation(len(source))
    cols = ["record_id", "nhs_number", "family", "given", "gender", "birthdate", "postcode",
            "previous_postcode"]
    for k, idx in enumerate(order):
        row, present = source[int(idx)]
        person = {c: (None if pd.isna(row[c]) else row[c]) for c in cols}
        subject, errors = corrupt(rng, person, names, pool)
        request = request_envelope(f"Q{k + 1:08d}", subject)
        yield request, (str(person["record_id"]) if present else None), errors


def write_requests(register: pd.DataFrame, count: int, out: Path, truth: Path,
                   seed: int = 0, absent_share: float = 0.2) -> None:
    """Requests as JSON lines (request format v1) and the truth beside them as CSV."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w") as fh, truth.open("w") as th:
        th.write("request_id,record_id,errors\n")
        for request, record_id, errors in synth_requests(register, count, seed, absent_share):
            fh.write(json.dumps(request, separators=(",", ":")) + "\n")
            th.write(f"{request['request_id']},{record_id or ''},{'|'.join(errors)}\n")


def days_ago(days: int) -> date:
    return REFERENCE_DATE - timedelta(days=days)
