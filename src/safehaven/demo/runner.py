"""The replay: the stream, in time order, through the real service functions.

Every request goes through :func:`safehaven.service.requests.submit` (decision engine,
cap counter, ledger), the simulated reviewers call :func:`~safehaven.service.requests.review`
(four-eyes enforced by the service), and approved requests go through
:func:`safehaven.service.tracing.complete` (matcher, minimisation, disclosure, notice or
exemption).  Nothing is short-cut for speed; the only batching is the transaction: one
commit per few hundred steps, because a commit on SQLite with ``synchronous=FULL`` costs an
fsync and the demo's steps have no client waiting for an acknowledgement.

Events are processed in simulated time (arrivals and reviews interleaved by a heap), so
the ledger reads as the history would have: a review lands days after its request, and
requests whose review falls after the replay's last day stay in the reviewers' queue.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime

from sqlalchemy.orm import Session, sessionmaker

from safehaven.demo.parameters import Parameters
from safehaven.demo.stream import Item, choose_purpose, request_body
from safehaven.domain.agreement import Agreement
from safehaven.domain.decision import AgreementSet
from safehaven.domain.request import parse_request_obj
from safehaven.ledger import heads, keys
from safehaven.service import requests as svc
from safehaven.service import tracing
from safehaven.service.tracing import Matcher

APPROVE_REASON = (
    "Grounds checked against the agreement: offence stated, other attempts to locate "
    "documented; disclosure is necessary and proportionate."
)
REFUSE_REASON = "The evidence supplied does not support the grounds stated; not proportionate."
EXEMPT_REASON = "Telling the person now would prejudice the purpose of the request."


@dataclass
class ReplayResult:
    requests: int = 0
    reviews: int = 0
    completed: int = 0
    left_in_review: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    by_stream: dict[str, int] = field(default_factory=dict)


@dataclass(order=True)
class _Review:
    at: datetime
    order: int
    stage: int = field(compare=False)
    item: Item = field(compare=False)
    public_id: str = field(compare=False)


def exemption_for(agreement: Agreement, at: datetime) -> tracing.ExemptionChoice | None:
    """The reviewer's recorded reason not to tell the person, if the agreement allows one."""
    if agreement.notification.rule == "notify" or not agreement.notification.exemptions:
        return None
    ex = agreement.notification.exemptions[0]
    review_on = at.date() + timedelta(days=min(90, ex.review_after_days))
    return tracing.ExemptionChoice(ex.id, EXEMPT_REASON, review_on)


class Replay:
    """One replay of a stream into one store under one set of agreements and firewall."""

    def __init__(self, factory: sessionmaker[Session], params: Parameters,
                 agreements: AgreementSet, matchers: Mapping[str, Matcher], *,
                 firewall_on: bool, batch: int = 500) -> None:
        self.factory = factory
        self.params = params
        self.agreements = agreements
        self.matchers = matchers
        self.firewall_on = firewall_on
        self.batch = batch
        self.end = datetime.combine(params.replay.end + timedelta(days=1), dtime.min, UTC)
        self.reviewers = params.reviewers

    def run(self, items: list[Item],
            progress: Callable[[int], None] | None = None) -> ReplayResult:
        start, cpu = time.perf_counter(), time.process_time()
        result = ReplayResult()
        pending: list[_Review] = []
        order = itertools.count()
        steps = 0
        years_signed: set[int] = set()
        key = keys.load_or_create_signing_key()
        # Use cases flush explicitly; autoflush before every query only adds statements.
        session = self.factory(autoflush=False)
        try:
            arrivals = iter(items)
            nxt: Item | None = next(arrivals, None)
            while nxt is not None or (pending and pending[0].at < self.end):
                if nxt is not None and (not pending or nxt.received_at <= pending[0].at):
                    self._sign_year_end(session, key, nxt.received_at.year, years_signed)
                    review = self._arrive(session, nxt, result)
                    if review is not None:
                        heapq.heappush(pending, _Review(review[0], next(order), 0, nxt,
                                                        review[1]))
                    nxt = next(arrivals, None)
                    if progress is not None:
                        progress(1)
                else:
                    r = heapq.heappop(pending)
                    again = self._review(session, r, result)
                    if again is not None:
                        heapq.heappush(pending, _Review(again, next(order), 1, r.item,
                                                        r.public_id))
                steps += 1
                if steps % self.batch == 0:
                    session.commit()
                    session.expunge_all()
            result.left_in_review = len(pending)
            heads.sign_head(session, key)
            session.commit()
        finally:
            session.close()
        result.seconds = time.perf_counter() - start
        result.cpu_seconds = time.process_time() - cpu
        return result

    def _sign_year_end(self, session: Session, key: object, year: int, done: set[int]) -> None:
        """A signed head at each year boundary, so oversight can check consistency."""
        if not done:
            done.add(year)
            return
        if year not in done:
            done.add(year)
            heads.sign_head(session, key)  # type: ignore[arg-type]

    def _matcher(self, agreement: Agreement) -> Matcher:
        return self.matchers[agreement.register_kind.value]

    def _arrive(self, session: Session, item: Item,
                result: ReplayResult) -> tuple[datetime, str] | None:
        agreement = self.agreements.get(item.agreement)
        made_on: date = item.received_at.date()
        purpose = choose_purpose(agreement, made_on, item.case)
        request = parse_request_obj(request_body(item, purpose))
        res = svc.submit(session, request, self.agreements, received_at=item.received_at,
                         firewall_on=self.firewall_on)
        result.requests += 1
        result.by_stream[item.stream] = result.by_stream.get(item.stream, 0) + 1
        if res.outcome == "approved" and agreement is not None:
            tracing.complete(session, res.public_id, agreements=self.agreements,
                             matcher=self._matcher(agreement), at=item.received_at,
                             actor=svc.ENGINE_ACTOR)
            result.completed += 1
            return None
        if res.outcome == "needs_review":
            return item.received_at + item.review_delays[0], res.public_id
        return None

    def _review(self, session: Session, r: _Review, result: ReplayResult) -> datetime | None:
        item = r.item
        reviewer = self.reviewers[(item.seq + r.stage) % len(self.reviewers)]
        refuse = item.reviewer_refuses and r.stage == 0
        state = svc.review(session, r.public_id, reviewer=reviewer,
                           verdict="refuse" if refuse else "approve",
                           reason=REFUSE_REASON if refuse else APPROVE_REASON, at=r.at)
        result.reviews += 1
        if state == "in_review":
            return r.at + item.review_delays[1]
        if state == "approved":
            agreement = self.agreements.get(item.agreement)
            assert agreement is not None
            exemption = exemption_for(agreement, r.at) if item.exempt else None
            tracing.complete(session, r.public_id, agreements=self.agreements,
                             matcher=self._matcher(agreement), at=r.at, actor=reviewer,
                             exemption=exemption)
            result.completed += 1
        return None
