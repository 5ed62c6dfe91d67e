"""The person-register model: how names, dates and postcodes are normalised and compared.

Choices and their reasons are in ``docs/matching.md``; in short:

* names are upper-cased, accents and punctuation removed, and only the first forename
  kept (registers and requesters disagree most about middle names);
* a forename is also mapped to a canonical form through a nickname table, so "Bill"
  meets "William" at a level of its own (weaker than an exact match);
* a date of birth gets a day/month-swapped twin, because a swapped day and month is the
  commonest date error in requests that cross the Atlantic or a form designer;
* a postcode is compared in full, against the person's previous postcode (people move;
  requesters often hold the old address), and by its outward code (the district).

No term-frequency adjustments: common names are handled by the ambiguity rule instead,
which keeps the online score exactly reproducible from the trained m/u table alone.
"""

from __future__ import annotations

import re
import unicodedata

from safehaven.matching.spec import Comparison, Derived, Level, ModelSpec, Scalar

_NON_LETTERS = re.compile(r"[^A-Z ]+")
_SPACES = re.compile(r" +")


def norm_name(value: Scalar) -> Scalar:
    if value is None:
        return None
    text = unicodedata.normalize("NFKD", str(value)).encode("ascii", "ignore").decode()
    text = text.upper().replace("-", " ").replace("'", "")
    text = _SPACES.sub(" ", _NON_LETTERS.sub("", text)).strip()
    return text or None


def norm_given(value: Scalar) -> Scalar:
    text = norm_name(value)
    return text.split(" ")[0] if text else None


def norm_gender(value: Scalar) -> Scalar:
    if value is None:
        return None
    v = str(value).strip().lower()
    return {"male": "M", "m": "M", "female": "F", "f": "F"}.get(v)


def norm_postcode(value: Scalar) -> Scalar:
    if value is None:
        return None
    compact = "".join(str(value).split()).upper()
    if len(compact) < 5:
        return None
    return f"{compact[:-3]} {compact[-3:]}"


def norm_date(value: Scalar) -> Scalar:
    if value is None:
        return None
    text = str(value).strip()[:10]
    return text or None


def norm_digits(value: Scalar) -> Scalar:
    if value is None:
        return None
    if value.isascii() and value.isdigit():  # the common case, at C speed
        return value
    text = "".join(ch for ch in str(value) if ch.isdigit())
    return text or None


# Canonical forename for common English nicknames (both directions are covered because the
# canonical form maps to itself).  Small on purpose: a wrong entry here raises the weight of
# two different people's names.
_NICKNAMES: dict[str, tuple[str, ...]] = {
    "WILLIAM": ("BILL", "BILLY", "WILL", "WILLIE", "LIAM"),
    "ROBERT": ("BOB", "BOBBY", "ROB", "ROBBIE", "BERT"),
    "RICHARD": ("DICK", "RICH", "RICKY", "RICK", "RICHIE"),
    "JAMES": ("JIM", "JIMMY", "JAMIE"),
    "JOHN": ("JACK", "JOHNNY", "JON"),
    "MICHAEL": ("MIKE", "MICK", "MICKEY"),
    "THOMAS": ("TOM", "TOMMY"),
    "CHRISTOPHER": ("CHRIS", "KIT"),
    "ANTHONY": ("TONY", "ANT"),
    "DANIEL": ("DAN", "DANNY"),
    "MATTHEW": ("MATT", "MATTY"),
    "JOSEPH": ("JOE", "JOEY"),
    "DAVID": ("DAVE", "DAVY"),
    "EDWARD": ("ED", "EDDIE", "TED", "TEDDY", "NED"),
    "ALEXANDER": ("ALEX", "SANDY", "XANDER"),
    "BENJAMIN": ("BEN", "BENNY"),
    "SAMUEL": ("SAM", "SAMMY"),
    "NICHOLAS": ("NICK", "NICKY"),
    "STEPHEN": ("STEVE", "STEVIE"),
    "PETER": ("PETE",),
    "ANDREW": ("ANDY", "DREW"),
    "JONATHAN": ("JONNY",),
    "TIMOTHY": ("TIM", "TIMMY"),
    "PATRICK": ("PAT", "PADDY"),
    "GEORGE": ("GEORDIE",),
    "HENRY": ("HARRY", "HAL"),
    "CHARLES": ("CHARLIE", "CHAS", "CHUCK"),
    "FREDERICK": ("FRED", "FREDDIE", "FREDDY"),
    "GERALD": ("GERRY",),
    "KENNETH": ("KEN", "KENNY"),
    "RONALD": ("RON", "RONNIE"),
    "DOUGLAS": ("DOUG",),
    "GREGORY": ("GREG",),
    "PHILIP": ("PHIL",),
    "RAYMOND": ("RAY",),
    "TERENCE": ("TERRY",),
    "LEONARD": ("LEN", "LENNY"),
    "ELIZABETH": ("LIZ", "LIZZIE", "BETH", "BETTY", "ELIZA", "LIBBY", "BESS"),
    "MARGARET": ("MAGGIE", "MEG", "PEGGY", "MAISIE"),
    "KATHERINE": ("KATE", "KATIE", "KATHY", "KAT", "KITTY", "CATHERINE", "CATH"),
    "REBECCA": ("BECKY", "BECKS", "BECCA"),
    "JENNIFER": ("JEN", "JENNY"),
    "SUSAN": ("SUE", "SUZY", "SUSIE"),
    "DEBORAH": ("DEBBIE", "DEB", "DEBRA"),
    "PATRICIA": ("PAT", "PATSY", "TRISH", "TRICIA"),
    "VICTORIA": ("VICKY", "VIKKI", "TORI"),
    "ALEXANDRA": ("ALEX", "LEXI", "SASHA"),
    "SAMANTHA": ("SAM", "SAMMIE"),
    "CHRISTINE": ("CHRIS", "CHRISSIE", "TINA"),
    "JACQUELINE": ("JACKIE",),
    "JOANNE": ("JO",),
    "AMANDA": ("MANDY",),
    "ELEANOR": ("ELLIE", "NELL", "NELLIE"),
    "ABIGAIL": ("ABBY", "ABBIE"),
    "JESSICA": ("JESS", "JESSIE"),
    "CHARLOTTE": ("LOTTIE", "CHARLIE"),
    "ANNE": ("ANNIE", "ANN", "NANCY"),
    "MARY": ("MOLLY", "POLLY", "MAE"),
    "SARAH": ("SALLY", "SADIE", "SARA"),
    "HELEN": ("NELL",),
    "DOROTHY": ("DOT", "DOTTIE", "DOLLY"),
    "FRANCES": ("FRAN", "FRANNIE"),
    "JOSEPHINE": ("JOSIE", "JO"),
    "GILLIAN": ("GILL", "JILL"),
    "JULIE": ("JULES",),
}
NICKNAMES: dict[str, str] = {}
for _canon, _nicks in _NICKNAMES.items():
    NICKNAMES.setdefault(_canon, _canon)
    for _nick in _nicks:
        NICKNAMES.setdefault(_nick, _canon)


def canonical_given(value: Scalar) -> Scalar:
    if value is None:
        return None
    return NICKNAMES.get(value, value)


def initial(value: Scalar) -> Scalar:
    return value[0] if value else None


def birth_year(value: Scalar) -> Scalar:
    return value[:4] if value and len(value) >= 4 else None


def swap_day_month(value: Scalar) -> Scalar:
    """``YYYY-DD-MM`` when that is a different, plausible date; otherwise nothing."""
    if value is None or len(value) != 10:
        return None
    month, day = value[5:7], value[8:10]
    if day == month or not day.isdigit() or int(day) > 12:
        return None
    return f"{value[:4]}-{day}-{month}"


def outward(value: Scalar) -> Scalar:
    return value.split(" ")[0] if value else None


PERSON_SPEC = ModelSpec(
    name="person",
    base=("nhs_number", "family", "given", "gender", "birthdate", "postcode",
          "previous_postcode"),
    normalise={
        "nhs_number": norm_digits,
        "family": norm_name,
        "given": norm_given,
        "gender": norm_gender,
        "birthdate": norm_date,
        "postcode": norm_postcode,
        "previous_postcode": norm_postcode,
    },
    derived={
        "family_initial": Derived("family", initial),
        "given_std": Derived("given", canonical_given),
        "given_initial": Derived("given", initial),
        "birthdate_swapped": Derived("birthdate", swap_day_month),
        "birth_year": Derived("birthdate", birth_year),
        "postcode_out": Derived("postcode", outward),
    },
    comparisons=(
        Comparison("nhs_number", (
            Level("null", ("nhs_number",)),
            Level("exact", ("nhs_number",), label="exact"),
            Level("else", label="different"),
        )),
        Comparison("family", (
            Level("null", ("family",)),
            Level("exact", ("family",), label="exact"),
            Level("lev", ("family",), k=1, label="levenshtein <= 1"),
            Level("lev", ("family",), k=2, label="levenshtein <= 2"),
            Level("else", label="different"),
        )),
        Comparison("given", (
            Level("null", ("given",)),
            Level("exact", ("given",), label="exact"),
            Level("exact", ("given_std",), label="same canonical name (nickname)"),
            Level("lev", ("given",), k=2, label="levenshtein <= 2"),
            Level("exact", ("given_initial",), label="same initial"),
            Level("else", label="different"),
        )),
        Comparison("gender", (
            Level("null", ("gender",)),
            Level("exact", ("gender",), label="exact"),
            Level("else", label="different"),
        )),
        Comparison("birthdate", (
            Level("null", ("birthdate",)),
            Level("exact", ("birthdate",), label="exact"),
            Level("swap", ("birthdate", "birthdate_swapped"), label="day and month swapped"),
            Level("lev", ("birthdate",), k=1, label="one character different"),
            Level("exact", ("birth_year",), label="same year"),
            Level("else", label="different"),
        )),
        Comparison("postcode", (
            Level("null", ("postcode",)),
            Level("exact", ("postcode",), label="exact"),
            Level("overlap", ("postcode", "previous_postcode"), label="current or previous"),
            Level("exact", ("postcode_out",), label="same outward code (district)"),
            Level("else", label="different"),
        )),
    ),
    blocking=(
        ("nhs_number",),
        ("birthdate", "family_initial"),
        ("family", "birth_year", "given_initial"),
        ("postcode", "family_initial"),
        ("birthdate", "postcode_out"),
        ("birthdate", "given_initial"),
    ),
)

#: EM training sessions.  Blocking on the date of birth lets EM learn every other field;
#: blocking on the full name then learns the date of birth and postcode.  (Blocking on
#: the postcode instead would let EM mistake "same household" for "same person".)
EM_BLOCKING: tuple[tuple[str, ...], ...] = (("birthdate",), ("family", "given"))
