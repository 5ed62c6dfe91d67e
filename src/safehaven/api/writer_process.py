"""The writer process: every write of ``serve --workers N`` on SQLite, in one process.

Why a process: SQLite takes one writer at a time, so the time a write holds the lock caps
the whole server's writes per second.  With a group-commit writer *thread* in each worker
(``api/writer.py``), measured under mixed load, the lock was held about 90 % of the time
but the holder was on the CPU for under half of it.  The rest it waited for its own
process's GIL: the sqlite3 module lets go of the GIL around every statement, and taking it
back from a busy event loop waits for the loop's switch interval (5 ms) each time.  The
two workers' writers also took turns at a file lock, each with its own smaller batch and
its own fsync.  Here one process does nothing but write: its GIL is uncontended, and one
batch (one transaction, one fsync) holds the units of every worker.

The contract does not change: a unit runs inside the writer's transaction and its caller
is answered only after the commit, so an acknowledged request is durable.  A unit is a
module-level function ``fn(session, cfg, *args)`` (see ``ApiConfig.write``), sent by
reference with its arguments over a Unix socket that only this server's processes can
open (a private directory, and multiprocessing's HMAC challenge with a per-run key).  The
writer process builds its own ``ApiConfig`` from the same settings as the workers.

If the writer process dies, writes in flight get a 503 (their outcome is unknown until the
agency resubmits the same ``request_id``, which is idempotent), and ``serve`` starts a new
writer; workers reconnect on their next write.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import multiprocessing
import os
import pickle  # nosec B403 - only between this server's own processes, see module docstring
import secrets
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Connection, Listener
from typing import TYPE_CHECKING, Any, TypeVar

from safehaven.api.errors import ApiError

if TYPE_CHECKING:
    from safehaven.api.context import ApiConfig

log = logging.getLogger("safehaven.writer")
T = TypeVar("T")
#: How long a worker waits at start-up for the writer process (which loads the register).
CONNECT_TIMEOUT_S = 180.0


class WriterUnavailableError(ApiError):
    """The writer process could not be reached, or went away with the write in flight."""

    def __init__(self, detail: str) -> None:
        super().__init__(503, "the store cannot take the write now; if it was a request, "
                         "resubmit it with the same request_id", [f"(writer): {detail}"],
                         headers={"Retry-After": "2"})

    def __reduce__(self) -> tuple[Any, ...]:
        return (WriterUnavailableError, (self.problems[0].removeprefix("(writer): "),))


class RemoteWriter:
    """A worker's end: sends units to the writer process and resolves their futures.

    One connection per worker process, shared by every request: sends are serialised by a
    lock (a send is a few microseconds), answers come back in any order on a receiving
    thread and are matched by call number.
    """

    def __init__(self, address: str, authkey: bytes) -> None:
        self.address = address
        self._authkey = authkey
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        self._pending: dict[int, Future[Any]] = {}
        self._calls = itertools.count()

    def wait_ready(self, timeout: float = CONNECT_TIMEOUT_S) -> None:
        """Block until the writer process answers (a worker calls this before serving)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with self._lock:
                    self._connected()
                return
            except WriterUnavailableError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def submit(self, fn: Callable[..., T], args: tuple[Any, ...]) -> Future[T]:
        future: Future[T] = Future()
        with self._lock:
            conn = self._connected()
            call = next(self._calls)
            payload = pickle.dumps((call, fn, args), protocol=pickle.HIGHEST_PROTOCOL)
            self._pending[call] = future
            try:
                conn.send_bytes(payload)
            except OSError as exc:
                self._pending.pop(call, None)
                self._forget(conn)
                raise WriterUnavailableError(f"send failed: {type(exc).__name__}") from None
        return future

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.wrap_future(self.submit(fn, args))

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._forget(self._conn)

    def _connected(self) -> Connection:
        if self._conn is None:
            try:
                conn = Client(self.address, family="AF_UNIX", authkey=self._authkey)
            except (OSError, EOFError, AuthenticationError) as exc:
                raise WriterUnavailableError(f"not reachable: {type(exc).__name__}") from None
            self._conn = conn
            threading.Thread(target=self._receive, args=(conn,), daemon=True,
                             name="safehaven-writer-client").start()
        return self._conn

    def _forget(self, conn: Connection) -> None:
        """Drop a broken connection (caller holds the lock); the next write reconnects."""
        if self._conn is conn:
            self._conn = None
        with contextlib.suppress(OSError):
            conn.close()

    def _receive(self, conn: Connection) -> None:
        while True:
            try:
                call, ok, value = _loads(conn.recv_bytes())
            except (EOFError, OSError):
                break
            with self._lock:
                future = self._pending.pop(call, None)
            if future is None:
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
        with self._lock:
            self._forget(conn)
            lost, self._pending = self._pending, {}
        for future in lost.values():
            future.set_exception(WriterUnavailableError(
                "the writer process went away; the outcome of this write is unknown"))


def _loads(data: bytes) -> Any:
    """Unpickle a message from the other end of an authenticated connection: only this
    server's own processes hold the key and can open the socket (see module docstring)."""
    return pickle.loads(data)  # noqa: S301  # nosec B301


def serve(cfg: ApiConfig, listener: Listener) -> None:
    """The writer process's loop: one thread per worker connection feeds the one writer."""
    while True:
        try:
            conn = listener.accept()
        except (OSError, EOFError, AuthenticationError) as exc:  # e.g. the wrong key
            log.warning("writer: refused a connection (%s)", type(exc).__name__)
            continue
        threading.Thread(target=_serve_connection, args=(cfg, conn), daemon=True,
                         name="safehaven-writer-conn").start()


def _serve_connection(cfg: ApiConfig, conn: Connection) -> None:
    send_lock = threading.Lock()

    def reply(call: int, future: Future[Any]) -> None:
        error = future.exception()
        message: tuple[int, bool, Any] = ((call, True, future.result()) if error is None
                                          else (call, False, error))
        try:
            payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # an answer that cannot cross: a bug, answered as one
            log.error("writer: unpicklable %s (%s)", "result" if error is None else
                      type(error).__name__, type(exc).__name__)
            payload = pickle.dumps((call, False, RuntimeError("writer: unpicklable answer")))
        # OSError: the worker went away, and its request with it: nobody to answer.
        with send_lock, contextlib.suppress(OSError):
            conn.send_bytes(payload)

    while True:
        try:
            call, fn, args = _loads(conn.recv_bytes())
        except (EOFError, OSError):
            return
        future = cfg.writer.submit(cfg.unit(fn, args))
        future.add_done_callback(functools.partial(reply, call))


#: Restart delays: 0.5 s after a writer that exits soon after starting, doubling with each
#: such exit up to 30 s; a writer that ran for a minute counts as having started well.
RESTART_DELAY_S = 0.5
RESTART_DELAY_MAX_S = 30.0
STABLE_AFTER_S = 60.0
_DIR_PREFIX = "safehaven-writer-"


def restart_delay(quick_exits: int) -> float:
    """How long to wait before starting a writer again after ``quick_exits`` exits in a row,
    each soon after its start.

    Why back off: a writer that cannot start at all (a database it cannot open, a full
    disk) would otherwise be started twice a second for as long as ``serve`` runs, each
    time logging and loading the register; while it is down, writes answer 503 anyway.
    """
    return min(RESTART_DELAY_MAX_S, RESTART_DELAY_S * (1 << min(16, max(0, quick_exits - 1))))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def sweep_stale_dirs(root: str | None = None) -> list[str]:
    """Remove socket directories left by a ``serve`` that was killed (SIGKILL runs no
    clean-up); returns what was removed.

    Only this user's directories, and only those whose ``serve`` (its pid is in the name)
    is gone; a reused pid keeps its directory, which is harmless (it is empty apart from a
    dead socket, and the key was never in it).
    """
    removed = []
    base = root or tempfile.gettempdir()
    with contextlib.suppress(OSError), os.scandir(base) as entries:
        for entry in entries:
            pid_text = entry.name.removeprefix(_DIR_PREFIX).split("-", 1)[0]
            if not entry.name.startswith(_DIR_PREFIX) or not pid_text.isdigit():
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if (entry.is_dir(follow_symlinks=False) and st.st_uid == os.getuid()
                    and not _alive(int(pid_text))):
                shutil.rmtree(entry.path, ignore_errors=True)
                removed.append(entry.path)
    return removed


class WriterProcess:
    """``serve``'s handle on the writer process: starts it, starts a new one if it dies
    (backing off if it keeps dying at start-up), stops it after the workers have stopped."""

    def __init__(self, settings: dict[str, Any]) -> None:
        for path in sweep_stale_dirs():
            log.info("removed a stale writer socket directory: %s", path)
        # A private directory (mode 0700) for the socket; a short path, as Unix socket
        # paths are limited to about a hundred bytes.  ``serve``'s pid is in its name, so
        # a later ``serve`` can tell a directory whose owner was killed.
        self._dir = tempfile.mkdtemp(prefix=f"{_DIR_PREFIX}{os.getpid()}-")
        self.address = os.path.join(self._dir, "writer.sock")
        self.key = secrets.token_bytes(32)
        self._settings = settings
        self._stopping = threading.Event()
        self._context = multiprocessing.get_context("spawn")
        self._proc = self._start()
        self.restarts = 0
        threading.Thread(target=self._supervise, name="safehaven-writer-supervisor",
                         daemon=True).start()

    @property
    def pid(self) -> int | None:
        pid: int | None = self._proc.pid
        return pid

    def _start(self) -> Any:
        proc = self._context.Process(
            target=writer_main, args=(self._settings, self.address, self.key.hex()),
            name="safehaven-writer")
        proc.start()
        self._started_at = time.monotonic()
        return proc

    def _supervise(self) -> None:
        quick_exits = 0
        while not self._stopping.is_set():
            self._proc.join(timeout=0.5)
            if self._proc.exitcode is None or self._stopping.is_set():
                continue
            ran_for = time.monotonic() - self._started_at
            quick_exits = quick_exits + 1 if ran_for < STABLE_AFTER_S else 1
            delay = restart_delay(quick_exits)
            log.warning("writer process exited (code %s) after %.1f s; starting a new one "
                        "in %.1f s", self._proc.exitcode, ran_for, delay)
            if not self._stopping.wait(delay):
                self._proc = self._start()
                self.restarts += 1

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(timeout)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(timeout)
        shutil.rmtree(self._dir, ignore_errors=True)


def writer_main(settings: dict[str, Any], address: str, authkey_hex: str) -> None:
    """Entry point of the writer process (started by ``serve --workers N``)."""
    from safehaven.cli.serve import build_config, watch_supervisor

    # Ctrl-C reaches the whole process group; the writer stops when ``serve`` tells it to,
    # after the workers have finished their requests (which may still need it).  Orphaned
    # (``serve`` killed), it outlasts the workers' grace period, as they may write until then.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    watch_supervisor(int(settings["supervisor_pid"]), stop_at_once=False)
    cfg = build_config(settings)
    if os.path.exists(address):
        os.unlink(address)
    listener = Listener(address, family="AF_UNIX", authkey=bytes.fromhex(authkey_hex))
    os.chmod(address, 0o600)
    serve(cfg, listener)
