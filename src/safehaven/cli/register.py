"""``safehaven register``: import, synthesise and train the controller's register."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from safehaven.cli.common import JsonOpt, fail, out, print_json
from safehaven.cli.engine import EngineOpt, SparkMasterOpt, batch_engine

app = typer.Typer(help="The register of people: import, synthesise, train the matching model.",
                  no_args_is_help=True)


@app.command("import")
def import_command(
    file: Path = typer.Argument(..., metavar="FILE", help="CSV or Parquet register file."),
    as_json: bool = JsonOpt,
) -> None:
    """Validate a register file and make it the workspace register (all or nothing)."""
    from safehaven.matching.register import RegisterImportError, import_register, register_path

    if not file.is_file():
        fail(f"FILE: {file}: no such file", as_json=as_json)
    if file.suffix.lower() not in (".csv", ".parquet"):
        fail(f"FILE: {file}: expected a .csv or .parquet file", as_json=as_json)
    start = time.perf_counter()
    progress = Progress(TextColumn("importing"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), disable=as_json, transient=True)
    with progress:
        task = progress.add_task("import", total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total if total > 0 else None)

        try:
            report = import_register(file, progress=advance)
        except RegisterImportError as exc:
            progress.stop()
            fail([f"{file}: {line}" for line in exc.report.lines()], as_json=as_json,
                 code=1)
        except (ValueError, OSError) as exc:
            progress.stop()
            fail(f"{file}: {exc}", as_json=as_json)
    seconds = time.perf_counter() - start
    if as_json:
        print_json({"imported": report.rows, "path": str(register_path()),
                    "seconds": round(seconds, 2)})
    else:
        out.print(f"imported {report.rows:,} records into {register_path()} "
                  f"in {seconds:.1f}s")


@app.command("synth")
def synth_command(
    people: int = typer.Option(..., "--people", min=1, help="Number of people."),
    out_file: Path = typer.Option(..., "--out", help="Register file to write (.parquet/.csv)."),
    seed: int = typer.Option(0, "--seed", help="Same seed, same register."),
    requests: int = typer.Option(0, "--requests", min=0,
                                 help="Also write this many requests with ground truth."),
    absent: float = typer.Option(0.2, "--absent", min=0.0, max=1.0,
                                 help="Share of requests about people not in the register."),
    as_json: bool = JsonOpt,
) -> None:
    """Write a synthetic UK register (and optionally requests + truth beside it)."""
    from safehaven.matching.synth import synth_register, write_register, write_requests

    if out_file.suffix.lower() not in (".csv", ".parquet"):
        fail(f"--out: {out_file}: expected a .csv or .parquet file name", as_json=as_json)
    start = time.perf_counter()
    df = synth_register(people, seed=seed)
    write_register(df, out_file)
    result: dict[str, object] = {"people": people, "register": str(out_file), "seed": seed}
    if requests:
        stem = out_file.with_suffix("")
        req_path = stem.with_name(stem.name + ".requests.jsonl")
        truth_path = stem.with_name(stem.name + ".truth.csv")
        write_requests(df, requests, req_path, truth_path, seed=seed, absent_share=absent)
        result.update({"requests": str(req_path), "truth": str(truth_path),
                       "request_count": requests})
    result["seconds"] = round(time.perf_counter() - start, 2)
    if as_json:
        print_json(result)
    else:
        for k, v in result.items():
            out.print(f"{k}: {v}")


@app.command("train")
def train_command(
    sample: int = typer.Option(20_000, "--sample", min=100,
                               help="Request-like records used for EM."),
    seed: int = typer.Option(42, "--seed"),
    engine: str = EngineOpt,
    spark_master: str = SparkMasterOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Train the Splink model on the workspace register; writes register/model.json."""
    from safehaven.matching.model import save_model, train, training_sample
    from safehaven.matching.person import EM_BLOCKING, PERSON_SPEC
    from safehaven.matching.register import model_path, read_register, register_path

    if not register_path().is_file():
        fail(f"{register_path()}: no register (run `safehaven register import` first)",
             as_json=as_json)
    start = time.perf_counter()
    cols = ["record_id", *PERSON_SPEC.base]
    register = read_register(columns=cols)
    with batch_engine(engine, spark_master, as_json=as_json) as spark:
        if spark is None:
            model = train(PERSON_SPEC, register, training_sample(register, sample, seed),
                          em_blocking=EM_BLOCKING, seed=seed)
        else:
            from safehaven.matching.spark_engine import train as train_on_spark

            model = train_on_spark(PERSON_SPEC, register,
                                   training_sample(register, sample, seed), spark=spark,
                                   em_blocking=EM_BLOCKING, seed=seed)
    save_model(model, model_path())
    seconds = time.perf_counter() - start
    if as_json:
        print_json({"model": str(model_path()), "records": len(register),
                    "seconds": round(seconds, 2)})
    else:
        out.print(f"trained on {len(register):,} records; model written to {model_path()} "
                  f"in {seconds:.1f}s")


@app.command("index")
def index_command(
    backend: str = typer.Option(
        "postgres", "--backend",
        help="postgres: build the candidate index in PostgreSQL (set "
        "SAFEHAVEN_REGISTER_INDEX_URL for the API and `trace` to use it); memory: build it "
        "in this process as each API worker does at start, and report its size."),
    database_url: str = typer.Option(
        None, "--database-url", envvar="SAFEHAVEN_REGISTER_INDEX_URL",
        help="PostgreSQL URL for --backend postgres (may be the store's database: the "
        "index lives in its own schema)."),
    schema: str = typer.Option("register_index", "--schema",
                               envvar="SAFEHAVEN_REGISTER_INDEX_SCHEMA",
                               help="PostgreSQL schema holding the index (the API and "
                               "`trace` read SAFEHAVEN_REGISTER_INDEX_SCHEMA)."),
    as_json: bool = JsonOpt,
) -> None:
    """Build the online matcher's candidate index from the workspace register."""
    from safehaven.matching.online import RELEASABLE_COLUMNS
    from safehaven.matching.person import PERSON_SPEC
    from safehaven.matching.register import register_digest, register_path, register_table

    if backend not in ("postgres", "memory"):
        fail(f"--backend: {backend!r}: expected postgres or memory", as_json=as_json)
    if not register_path().is_file():
        fail(f"{register_path()}: no register (run `safehaven register import` first)",
             as_json=as_json)
    start = time.perf_counter()
    cols = list(dict.fromkeys(["record_id", *PERSON_SPEC.base, *RELEASABLE_COLUMNS]))
    digest = register_digest()
    table = register_table(columns=cols)
    if register_digest() != digest:
        fail("the register was replaced while it was being read (a `register import` "
             "running?): run this again", as_json=as_json)
    result: dict[str, object] = {"backend": backend, "people": table.num_rows,
                                 "register_sha256": digest}
    if backend == "memory":
        from safehaven.matching.index import RegisterIndex

        index = RegisterIndex.from_arrow(PERSON_SPEC, table, "record_id")
        result["index_mib"] = round(index.nbytes() / 2**20, 1)
    else:
        if not database_url:
            fail("--database-url: required for --backend postgres (or set "
                 "SAFEHAVEN_REGISTER_INDEX_URL)", as_json=as_json)
        import psycopg

        from safehaven.matching.pg_index import build_index, index_size

        def say(message: str) -> None:
            if not as_json:
                out.print(f"  {message}")

        try:
            report = build_index(database_url, table, PERSON_SPEC,
                                 releasable=RELEASABLE_COLUMNS, schema=schema, progress=say,
                                 register_sha256=digest)
            sizes = index_size(database_url, schema)
        except (psycopg.Error, ValueError, RuntimeError) as exc:
            fail(f"--database-url: {str(exc).splitlines()[0] if str(exc) else exc}",
                 as_json=as_json)
        result.update({"schema": schema, "steps": report.steps,
                       "size_mib": round(sum(sizes.values()) / 2**20, 1),
                       "large_blocks": report.large_blocks})
    result["seconds"] = round(time.perf_counter() - start, 2)
    if as_json:
        print_json(result)
    else:
        size = (f"{result['index_mib']} MiB in memory" if backend == "memory"
                else f"{result['size_mib']} MiB in PostgreSQL schema {schema}")
        out.print(f"indexed {table.num_rows:,} people ({size}) in {result['seconds']}s")
