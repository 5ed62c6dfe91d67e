"""Server-rendered pages: transparency, agreements, ledger, reviewer desk, oversight, portal.

The pages are a thin skin over the HTTP API's own handlers and the services: a reviewer's
verdict calls :func:`safehaven.api.reviewers.verdict` (a tracing request) or
:func:`safehaven.api.aggregates.review_verdict` (an aggregate release) with the page
session's cookie and the form's CSRF token, so the rules (four-eyes, written reasons,
exemptions, CSRF) are enforced in exactly one place.  Everything works without JavaScript:
forms post and redirect (POST/redirect/GET), charts are SVG drawn on the server.

The page cookie is separate from the API's (which is scoped to ``/v1``) and carries the
same kind of server-side session; forms carry the session's CSRF token in a hidden field.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, timedelta
from importlib import resources
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Form, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from pydantic import ValidationError
from sqlalchemy import func, select

from safehaven.api import aggregates as aggregate_api
from safehaven.api import auth, people, reviewers, subjects
from safehaven.api.context import ApiConfig, config
from safehaven.api.errors import ApiError
from safehaven.domain.statistics import Period
from safehaven.ledger import heads, keys, log
from safehaven.service import accounts
from safehaven.service import aggregates as aggregate_service
from safehaven.service import subjects as subject_service
from safehaven.service.reports import ReportQuery, build_report
from safehaven.service.settings import firewall_enabled, firewall_history
from safehaven.store.db import transaction
from safehaven.store.models import RequestRow
from safehaven.web.report_html import LABELS, chart_for

PAGE_COOKIE = "safehaven_page"
Cfg = Annotated[ApiConfig, Depends(config)]

_env = Environment(
    loader=PackageLoader("safehaven.web", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)

router = APIRouter(include_in_schema=False)

STATUS_COLOURS = {
    "draft": "#b1b4b6",
    "in_force": "#00703c",
    "narrowed": "#f47738",
    "suspended": "#d4351c",
    "withdrawn": "#0b0c0c",
}


def render(name: str, request: Request, status: int = 200, **context: Any) -> HTMLResponse:
    html = _env.get_template(name).render(request=request, path=request.url.path, **context)
    return HTMLResponse(html, status_code=status)


def _creds(request: Request, csrf: str | None = None) -> auth.Credentials:
    return auth.Credentials(None, request.cookies.get(PAGE_COOKIE), csrf)


def _who(cfg: ApiConfig, request: Request) -> accounts.WebSession | None:
    token = request.cookies.get(PAGE_COOKIE)
    if not token:
        return None
    with transaction(cfg.reader) as session:
        return accounts.load_session(session, token, at=cfg.clock())


def _login_redirect(back_to: str) -> RedirectResponse:
    return RedirectResponse(f"/review/login?next={quote(back_to)}", status_code=303)


def _set_cookie(response: Response, cfg: ApiConfig, web: accounts.WebSession) -> None:
    response.set_cookie(PAGE_COOKIE, web.token, httponly=True, samesite="strict",
                        secure=cfg.secure_cookies, path="/",
                        max_age=int((web.expires_at - cfg.clock()).total_seconds()))


# --- public pages ----------------------------------------------------------------------------


@router.get("/static/safehaven.css")
def stylesheet() -> Response:
    """One stylesheet file: the pages' CSP allows styles from 'self' only, never inline."""
    css = resources.files("safehaven.web").joinpath("static/safehaven.css").read_text("utf-8")
    return Response(css, media_type="text/css",
                    headers={"Cache-Control": "public, max-age=3600"})


@router.get("/", response_class=HTMLResponse)
def home(request: Request, cfg: Cfg) -> HTMLResponse:
    with transaction(cfg.reader) as session:
        total = session.execute(select(func.count()).select_from(RequestRow)).scalar_one()
        firewall = firewall_enabled(session)
    return render("home.html", request, total=total, firewall=firewall,
                  agreements=sorted(cfg.agreements.agreements.values(), key=lambda a: a.id))


def _date(value: str | None, default: date) -> date:
    try:
        return date.fromisoformat(value) if value else default
    except ValueError:
        return default


@router.get("/transparency", response_class=HTMLResponse)
def transparency(
    request: Request, cfg: Cfg,
    agreement: Annotated[str | None, Query(max_length=80)] = None,
    start: Annotated[str | None, Query(alias="from", max_length=10)] = None,
    end: Annotated[str | None, Query(alias="to", max_length=10)] = None,
    period: Annotated[str, Query(max_length=10)] = "month",
) -> HTMLResponse:
    """The public report: suppressed small counts, charts with status changes marked."""
    with transaction(cfg.reader) as session:
        lo, hi = session.execute(
            select(func.min(RequestRow.received_at), func.max(RequestRow.received_at))
        ).one()
        first = lo.date() if lo else date.today()
        last = hi.date() if hi else date.today()
        q = ReportQuery(
            agreement=agreement or None,
            start=_date(start, first),
            end=_date(end, last),
            period=Period(period) if period in {p.value for p in Period} else Period.MONTH,
        )
        report = build_report(session, q, public=True)
        aggregate_counts = aggregate_service.outcome_counts(
            session, start=q.start, end=q.end, agreement=q.agreement)
    charts = {t["agreement"]: chart_for(report, t["agreement"]) for t in report["totals"]}
    return render("transparency.html", request, report=report, charts=charts, labels=LABELS,
                  agreements=sorted(cfg.agreements.agreements), query=q,
                  periods=[p.value for p in Period], aggregate_counts=aggregate_counts)


def timeline(agreement: Any, start: date, end: date, width: int = 720) -> dict[str, Any]:
    """Status history as horizontal segments between ``start`` and ``end`` (SVG geometry)."""
    span = max((end - start).days, 1)
    left, right = 10, width - 10

    def x(day: date) -> float:
        day = min(max(day, start), end)
        return left + (right - left) * (day - start).days / span

    changes = list(agreement.status_history)
    segments = []
    for i, change in enumerate(changes):
        until = changes[i + 1].date if i + 1 < len(changes) else end
        if until <= start or change.date >= end:
            continue
        segments.append({"x": x(change.date), "width": max(x(until) - x(change.date), 1.0),
                         "colour": STATUS_COLOURS.get(change.status.value, "#505a5f"),
                         "status": change.status.value, "date": change.date.isoformat()})
    years = [{"x": x(date(y, 1, 1)), "label": str(y)}
             for y in range(start.year + 1, end.year + 1)]
    return {"width": width, "segments": segments, "years": years}


@router.get("/agreements", response_class=HTMLResponse)
def agreement_list(request: Request, cfg: Cfg) -> HTMLResponse:
    items = sorted(cfg.agreements.agreements.values(), key=lambda a: a.id)
    start, end = date(2013, 1, 1), date(2019, 12, 31)
    return render("agreements.html", request, agreements=items,
                  timelines={a.id: timeline(a, start, end) for a in items},
                  colours=STATUS_COLOURS, today=date.today())


@router.get("/agreements/{agreement_id}", response_class=HTMLResponse)
def agreement_page(agreement_id: str, request: Request, cfg: Cfg) -> HTMLResponse:
    agreement = cfg.agreements.get(agreement_id)
    if agreement is None:
        return render("message.html", request, status=404, title="Agreement not found",
                      message=f"No agreement with id {agreement_id!r} is loaded.")
    first = agreement.status_history[0].date
    end = max(agreement.status_history[-1].date + timedelta(days=365), date(2019, 1, 1))
    return render("agreement.html", request, a=agreement,
                  timeline=timeline(agreement, date(first.year, 1, 1), end),
                  colours=STATUS_COLOURS)


@router.get("/ledger", response_class=HTMLResponse)
def ledger_page(request: Request, cfg: Cfg,
                verify: Annotated[bool, Query()] = False) -> HTMLResponse:
    """The ledger's head; ``?verify=1`` recomputes every hash and checks every signed head."""
    from safehaven.ledger.verify import verify_log

    with transaction(cfg.reader) as session:
        size, root = log.current_root(session)
        latest = heads.latest_head(session)
        signed = len(heads.all_heads(session))
        history = firewall_history(session)
        changes = [{"value": c.value, "actor": c.actor, "reason": c.reason,
                    "at": c.at.isoformat()} for c in history]
    result = None
    if verify:
        try:
            public = keys.load_or_create_signing_key().public_key()
        except keys.LedgerKeyError:
            public = None
        with cfg.engine.connect() as conn:
            report = verify_log(conn, public)
        result = {"ok": report.ok, "size": report.size, "root": report.root.hex(),
                  "heads": report.heads, "problems": report.problems,
                  "first_bad_entry": report.first_bad_entry}
    return render("ledger.html", request, size=size, root=root.hex(),
                  head=latest.to_json() if latest else None, signed=signed, result=result,
                  firewall_changes=changes)


# --- reviewer desk ----------------------------------------------------------------------------


@router.get("/review/login", response_class=HTMLResponse)
def review_login_form(request: Request, next: str = "/review") -> HTMLResponse:
    return render("login.html", request, next=next if next.startswith("/") else "/review",
                  error=None)


@router.post("/review/login", response_model=None)
async def review_login(
    request: Request, cfg: Cfg,
    username: Annotated[str, Form(max_length=80)],
    password: Annotated[str, Form(max_length=1000)],
    next: Annotated[str, Form(max_length=200)] = "/review",
) -> Response:
    web = await people.log_in(cfg, username, password, people.client_address(request))
    if web is None:
        return render("login.html", request, status=401, next=next,
                      error="Wrong username or password.")
    target = next if next.startswith("/") and not next.startswith("//") else "/review"
    if web.role == "oversight" and target == "/review":
        target = "/oversight"  # the desk is for reviewers; oversight reads its own page
    response = RedirectResponse(target, status_code=303)
    _set_cookie(response, cfg, web)
    return response


@router.post("/logout", response_model=None)
def logout(request: Request, cfg: Cfg,
           csrf_token: Annotated[str, Form(max_length=200)] = "") -> Response:
    web = _who(cfg, request)
    if web is not None and accounts.csrf_ok(web.csrf_token, csrf_token):
        with transaction(cfg.factory) as session:
            accounts.end_session(session, web.token)
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(PAGE_COOKIE, path="/")
    return response


@router.get("/review", response_model=None)
def review_queue(request: Request, cfg: Cfg) -> Response:
    web = _who(cfg, request)
    if web is None or web.role != "reviewer":
        return _login_redirect("/review")
    try:
        queue = reviewers.queue(cfg, _creds(request), limit=200)
        held = aggregate_api.review_queue(cfg, _creds(request), limit=200)
    except ApiError as exc:
        return render("message.html", request, status=exc.status, title="Not allowed",
                      message=exc.error)
    return render("queue.html", request, web=web, items=queue["requests"],
                  releases=held["releases"], dimension_labels=DIMENSION_LABELS)


# --- aggregate releases on the desk ---------------------------------------------------------

#: How a breakdown is named on the pages (the API keeps the ids).
DIMENSION_LABELS = {
    "area": "Area (postcode district)",
    "age_band": "Age band",
    "gender": "Gender",
    "nationality_group": "Nationality group",
    "month": "Month first seen",
}


def _aggregate_terms(cfg: ApiConfig, view: dict[str, Any]) -> dict[str, Any]:
    """The agreement's terms for this release (smallest cell shown, reviewers needed), as
    the loaded agreements state them; ``None`` values if the agreement is no longer loaded."""
    agreement = cfg.agreements.get(view["agreement"])
    terms = agreement.purpose_terms(view["purpose"]) if agreement else None
    aggregates = terms.aggregates if terms else None
    return {
        "title": agreement.title if agreement else None,
        "requester_name": next((p.name for p in agreement.parties.requesters
                                if p.id == view["requester"]), None) if agreement else None,
        "controller": agreement.parties.controller.name if agreement else None,
        "min_cell": aggregates.min_cell if aggregates else None,
        "reviewers": int(view["decision"].get("reviewers_required", 0)),
    }


def _aggregate_page(request: Request, cfg: ApiConfig, web: accounts.WebSession,
                    view: dict[str, Any], *, status: int = 200, done: str | None = None,
                    errors: list[str] | None = None, form: dict[str, str] | None = None,
                    oversight: bool = False) -> HTMLResponse:
    mine = any(r["reviewer"] == web.username for r in view["reviews"])
    return render("aggregate.html", request, status=status, web=web, r=view,
                  terms=_aggregate_terms(cfg, view), reviewed_by_me=mine, done=done,
                  errors=errors or [], form=form or {}, oversight=oversight,
                  body_json=json.dumps(view["body"], indent=2, ensure_ascii=False),
                  dimension_labels=DIMENSION_LABELS)


def _release_id(value: str) -> str | None:
    """A release id as the API accepts it (at most 64 characters), else ``None``: a page
    answers a 404 page rather than the API's JSON validation error."""
    return value if len(value) <= 64 else None


def _request_not_found(request: Request, exc: ApiError) -> HTMLResponse:
    return render("message.html", request, status=exc.status, title="Request not found",
                  message=exc.error)


def _release_not_found(request: Request) -> HTMLResponse:
    return render("message.html", request, status=404, title="Aggregate release not found",
                  message="No aggregate release has this id.")


def _release_page(request: Request, cfg: ApiConfig, web: accounts.WebSession, release_id: str,
                  show: Callable[[str, ApiConfig, Any], dict[str, Any]],
                  **page: Any) -> Response:
    """One aggregate release's page, through the role's own API handler (``show``)."""
    if _release_id(release_id) is None:
        return _release_not_found(request)
    try:
        view = show(release_id, cfg, _creds(request))
    except ApiError as exc:
        return render("message.html", request, status=exc.status,
                      title="Aggregate release not found", message=exc.error)
    return _aggregate_page(request, cfg, web, view, **page)


def _verdict_problems(exc: ValidationError) -> list[str]:
    """The verdict form's own words for the model's complaints."""
    said = {"verdict": "verdict: choose approve or refuse",
            "reason": "reason: a written reason is required for every review"}
    problems = []
    for e in exc.errors():
        field = str(e["loc"][0]) if e["loc"] else ""
        problems.append(said.get(field, f"{field}: {e['msg']}"))
    return problems


@router.get("/review/aggregates", response_model=None)
def aggregate_queue_redirect() -> Response:
    """Aggregate releases wait in the one queue, beside tracing requests."""
    return RedirectResponse("/review#aggregates", status_code=303)


@router.get("/review/aggregates/{release_id}", response_model=None)
def aggregate_detail(release_id: str, request: Request, cfg: Cfg,
                     done: str | None = None) -> Response:
    web = _who(cfg, request)
    if web is None or web.role != "reviewer":
        return _login_redirect(f"/review/aggregates/{release_id}")
    return _release_page(request, cfg, web, release_id, aggregate_api.review_show, done=done)


@router.post("/review/aggregates/{release_id}", response_model=None)
async def aggregate_verdict(
    release_id: str, request: Request, cfg: Cfg,
    verdict: Annotated[str, Form(max_length=10)] = "",
    reason: Annotated[str, Form(max_length=4000)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """A reviewer's verdict on an aggregate release, through the API's own handler (CSRF,
    one verdict per reviewer, four-eyes, the release that follows) and its group-commit
    writer; a problem re-renders the page with the reviewer's words kept."""
    web = await run_in_threadpool(_who, cfg, request)
    if web is None or web.role != "reviewer":
        return _login_redirect(f"/review/aggregates/{release_id}")
    if _release_id(release_id) is None:
        return _release_not_found(request)
    problems: list[str] = []
    status = 422
    try:
        body = aggregate_api.AggregateVerdict.model_validate(
            {"verdict": verdict, "reason": reason})
        result = await aggregate_api.review_verdict(release_id, body, cfg,
                                                    _creds(request, csrf_token))
    except ValidationError as exc:
        problems = _verdict_problems(exc)
    except ApiError as exc:
        if exc.status == 404:
            return _release_not_found(request)
        problems, status = exc.problems or [exc.error], exc.status
    if problems:
        view = await run_in_threadpool(aggregate_api.review_show, release_id, cfg,
                                       _creds(request))
        return _aggregate_page(request, cfg, web, view, status=status, errors=problems,
                               form={"verdict": verdict, "reason": reason})
    return RedirectResponse(f"/review/aggregates/{release_id}?done={result['state']}",
                            status_code=303)


@router.get("/review/{request_id}", response_model=None)
def review_detail(request_id: str, request: Request, cfg: Cfg,
                  done: str | None = None) -> Response:
    web = _who(cfg, request)
    if web is None or web.role != "reviewer":
        return _login_redirect(f"/review/{request_id}")
    try:
        view = reviewers.show(request_id, cfg, _creds(request))
    except ApiError as exc:
        return _request_not_found(request, exc)
    agreement = cfg.agreements.get(view["agreement"])
    exemptions = agreement.notification.exemptions if agreement else []
    return render("request.html", request, web=web, r=view, exemptions=exemptions,
                  done=done, errors=[], default_review_on=(cfg.clock().date()
                                                           + timedelta(days=90)).isoformat())


@router.post("/review/{request_id}", response_model=None)
async def review_verdict(
    request_id: str, request: Request, cfg: Cfg,
    verdict: Annotated[str, Form(max_length=10)],
    reason: Annotated[str, Form(max_length=4000)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    exemption_id: Annotated[str, Form(max_length=80)] = "",
    exemption_reason: Annotated[str, Form(max_length=4000)] = "",
    review_on: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """A reviewer's verdict on a tracing request, through the API's handler; a problem
    re-renders the page with the API's status (422 bad form, 403 CSRF, 409 decided or
    already reviewed by this person) and the reviewer's words kept."""
    web = await run_in_threadpool(_who, cfg, request)
    if web is None or web.role != "reviewer":
        return _login_redirect(f"/review/{request_id}")
    problems: list[str] = []
    status = 422
    try:
        exemption = None
        if exemption_id:
            exemption = reviewers.Exemption(exemption_id=exemption_id,
                                            reason=exemption_reason or reason,
                                            review_on=date.fromisoformat(review_on))
        body = reviewers.Verdict(verdict=verdict, reason=reason,
                                 exemption=exemption)
        result = await reviewers.verdict(request_id, body, cfg, _creds(request, csrf_token))
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
    except ValueError:
        problems = ["review_on: a date in the format YYYY-MM-DD"]
    except ApiError as exc:
        if exc.status == 404:
            return _request_not_found(request, exc)
        status = exc.status
        # A form problem is named by field; anything else needs its headline too
        # ("cannot review this request now: ... already refused").
        problems = (exc.problems or [exc.error]) if status == 422 else [
            exc.error, *exc.problems]
    if problems:
        try:
            view = await run_in_threadpool(reviewers.show, request_id, cfg, _creds(request))
        except ApiError as exc:  # not found (a malformed id fails the form check first)
            return _request_not_found(request, exc)
        agreement = cfg.agreements.get(view["agreement"])
        return render("request.html", request, status=status, web=web, r=view,
                      exemptions=agreement.notification.exemptions if agreement else [],
                      done=None, errors=problems,
                      form={"verdict": verdict, "reason": reason, "exemption_id": exemption_id,
                            "exemption_reason": exemption_reason, "review_on": review_on},
                      default_review_on=(cfg.clock().date() + timedelta(days=90)).isoformat())
    return RedirectResponse(f"/review/{request_id}?done={result['state']}", status_code=303)


# --- oversight ----------------------------------------------------------------------------------


@router.get("/oversight", response_model=None)
def oversight_page(request: Request, cfg: Cfg) -> Response:
    """Every aggregate release for the oversight role: outcomes by agreement, then each
    release with who asked, what the rules and reviewers said, and the table's hash."""
    web = _who(cfg, request)
    if web is None or web.role != "oversight":
        return _login_redirect("/oversight")
    try:
        listed = aggregate_api.oversight_list(cfg, _creds(request), state=None, limit=1000)
    except ApiError as exc:
        return render("message.html", request, status=exc.status, title="Not allowed",
                      message=exc.error)
    with transaction(cfg.reader) as session:
        counts = aggregate_service.outcome_counts(session)
    return render("oversight.html", request, web=web, releases=listed["releases"],
                  counts=counts, dimension_labels=DIMENSION_LABELS)


@router.get("/oversight/aggregates/{release_id}", response_model=None)
def oversight_release(release_id: str, request: Request, cfg: Cfg) -> Response:
    web = _who(cfg, request)
    if web is None or web.role != "oversight":
        return _login_redirect(f"/oversight/aggregates/{release_id}")
    return _release_page(request, cfg, web, release_id, aggregate_api.oversight_show,
                         oversight=True)


# --- subject portal ---------------------------------------------------------------------------


@router.get("/portal", response_model=None)
def portal(request: Request, cfg: Cfg) -> Response:
    web = _who(cfg, request)
    if web is not None and web.role == "subject":
        return RedirectResponse("/portal/requests", status_code=303)
    return render("portal.html", request, step="start", errors=[], nhs_number="",
                  birthdate="")


def _code_form(nhs_number: str, birthdate: str) -> subjects.CodeRequest:
    return subjects.CodeRequest(nhs_number=nhs_number, birthdate=birthdate)


@router.post("/portal/code", response_model=None)
def portal_code(request: Request, cfg: Cfg,
                nhs_number: Annotated[str, Form(max_length=20)],
                birthdate: Annotated[str, Form(max_length=10)]) -> Response:
    try:
        form = _code_form(nhs_number.replace(" ", ""), birthdate)
        with transaction(cfg.factory) as session:
            code = subject_service.issue_code(session, form.nhs_number, form.birthdate,
                                              at=cfg.clock())
    except ValidationError as exc:
        errors = [f"{e['loc'][-1]}: {e['msg']}" for e in exc.errors()]
        return render("portal.html", request, status=422, step="start", errors=errors,
                      nhs_number=nhs_number, birthdate=birthdate)
    except subject_service.TooManyCodesError as exc:
        return render("portal.html", request, status=429, step="code", errors=[str(exc)],
                      nhs_number=nhs_number, birthdate=birthdate)
    if cfg.print_codes:
        print(f"[safehaven demo] subject access code: {code}", flush=True)
    return render("portal.html", request, step="code", errors=[],
                  nhs_number=form.nhs_number, birthdate=form.birthdate.isoformat())


@router.post("/portal/login", response_model=None)
def portal_login(request: Request, cfg: Cfg,
                 nhs_number: Annotated[str, Form(max_length=20)],
                 birthdate: Annotated[str, Form(max_length=10)],
                 code: Annotated[str, Form(max_length=10)]) -> Response:
    try:
        form = _code_form(nhs_number, birthdate)
    except ValidationError:
        return render("portal.html", request, status=422, step="start",
                      errors=["Enter your NHS number and date of birth again."],
                      nhs_number=nhs_number, birthdate=birthdate)
    with transaction(cfg.factory) as session:
        now = cfg.clock()
        ok = subject_service.verify_code(session, form.nhs_number, form.birthdate,
                                         code.strip(), at=now)
        web = accounts.start_session(session, role="subject", at=now,
                                     subject_nhs_number=form.nhs_number) if ok else None
    if web is None:
        return render("portal.html", request, status=401, step="code",
                      errors=["code: wrong, used or expired code"],
                      nhs_number=nhs_number, birthdate=birthdate)
    response = RedirectResponse("/portal/requests", status_code=303)
    _set_cookie(response, cfg, web)
    return response


@router.get("/portal/requests", response_model=None)
def portal_requests(request: Request, cfg: Cfg) -> Response:
    web = _who(cfg, request)
    if web is None or web.role != "subject":
        return RedirectResponse("/portal", status_code=303)
    about = subjects.about_me(cfg, _creds(request))
    return render("portal_requests.html", request, web=web, items=about["requests"])


def install(app: FastAPI) -> None:
    """Mount the pages on the API app (one process, one store, one set of rules); once."""
    if getattr(app.state, "pages_installed", False):
        return
    app.state.pages_installed = True
    app.include_router(router)
