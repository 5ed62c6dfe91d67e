"""The database-side report aggregation equals the per-request Python tally.

``build_report`` aggregates in SQL (``reports.tally_sql``) so that a national-volume
store answers in about a second; ``domain.statistics.tally`` over ``iter_facts`` is the
definition.  Both are run over the same lifecycle data (every state, reviews, matches,
disclosures with and without new information, notices and exemptions, refusals by
several rules) on SQLite and PostgreSQL, for every period, with and without an agreement
filter and with date bounds that cut through the data.
"""

from __future__ import annotations

from datetime import date

from safehaven.domain.statistics import Period, tally
from safehaven.service.reports import ReportQuery, iter_facts, tally_sql
from safehaven.store.db import transaction
from tests.service.test_reports import _populate

QUERIES = [
    (agreement, start, end, period)
    for agreement, start, end in [
        (None, date(2016, 1, 1), date(2020, 1, 1)),
        (None, date(2017, 3, 15), date(2018, 2, 10)),  # bounds inside months
        ("nhs-police-tracing", date(2016, 1, 1), date(2020, 1, 1)),
    ]
    for period in Period
]


def _table(counts):
    return {k: (v.as_dict(), dict(v.refused_by_rule)) for k, v in counts.items()}


def test_sql_tally_equals_python_tally(factory, agreements):
    # One populated store per dialect, every query against it (populating is the slow part).
    _populate(factory, agreements, 80, seed=23)
    for agreement, start, end, period in QUERIES:
        q = ReportQuery(agreement, start, end, period)
        with transaction(factory) as s:
            expected = tally(iter_facts(s, q), period)
            got = tally_sql(s, q)
        assert expected, f"no data reach {q}: the comparison would mean nothing"
        assert _table(got) == _table(expected), q

    q = ReportQuery(None, date(2016, 1, 1), date(2020, 1, 1), Period.YEAR)
    with transaction(factory) as s:
        table = tally_sql(s, q)
    total = {name: sum(getattr(c, name) for c in table.values())
             for name in ("received", "refused_by_engine", "sent_to_review",
                          "refused_by_reviewer", "approved", "matched", "disclosed",
                          "new_information", "already_known", "notified", "exempted")}
    assert all(v > 0 for v in total.values()), total  # every count is exercised
    assert any(c.refused_by_rule for c in table.values())
