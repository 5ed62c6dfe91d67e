"""Coverage-guided fuzzing (atheris) of the bulk intake parser: CSV / NDJSON bytes -> rows.

Property: ``parse_bulk`` returns row objects (or per-row problems) or raises the API's
``ApiError`` (413/422), or ``csv.Error``, which the app turns into a 422 (see
``api/hardening.py``; regression test ``test_megabyte_names_are_refused_not_stored``).
Anything else is a crash.  Run by hand, bounded:

    .venv/bin/python fuzz/atheris_bulk_csv.py -runs=20000 -max_len=4096
"""

from __future__ import annotations

import contextlib
import csv
import sys

import atheris

# Instrument only our parsing code: instrumenting all of SQLAlchemy/FastAPI takes minutes.
with atheris.instrument_imports(include=["safehaven.api.agencies", "safehaven.domain"]):
    from safehaven.api.agencies import parse_bulk
    from safehaven.api.errors import ApiError
    from safehaven.domain.request import RequestFormatError, parse_request_obj


def one(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    kind = "text/csv" if fdp.ConsumeBool() else "application/x-ndjson"
    raw = fdp.ConsumeBytes(fdp.remaining_bytes())
    try:
        rows = parse_bulk(raw, kind, 100)
    except (ApiError, csv.Error):
        return
    for row in rows:
        if isinstance(row, dict):
            with contextlib.suppress(RequestFormatError):
                parse_request_obj(row)


def main() -> None:
    atheris.Setup(sys.argv, one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
