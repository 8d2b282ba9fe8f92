"""Connecting to the cluster: the address check, ``ray.init`` with the jobs' runtime
environment, and the background connection made while the scripts are analysed.

``ADDRESS`` is what ``ray.init`` takes (``auto``, ``HOST:PORT``, ``ray://HOST:PORT``);
``local`` starts a private Ray instance for the session.  An address where nothing answers is a
``pytest.UsageError`` within seconds.  :func:`preconnect` (called at ``pytest_configure``)
connects in a background thread; the executor, made at session start, takes that connection
over with :func:`take_connection` and fails as connecting would have.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from training_plugin.executors.ray.shipping import EXCLUDES, RAY_JOB_VAR, PackageRoots

if TYPE_CHECKING:  # pragma: no cover
    from training_plugin.options import Settings

MSG_UNREACHABLE = (
    "--ray {address}: no Ray cluster answers there ({why}). Start one with "
    "`ray start --head --port=6379` and pass --ray HOST:6379, or use --ray local for a private "
    "instance on this machine."
)
MSG_CONNECT_FAILED = ("--ray {address}: could not open a session on the Ray cluster (connect, "
                      "then ship the project as its working_dir): {why}")
#: Seconds to wait for a TCP answer from HOST:PORT before calling the address a usage error.
CONNECT_CHECK_S = 5.0
#: Ray Client keeps a disconnected client's work for this long (seconds) before it ends it;
#: the executor's default when ``RAY_CLIENT_RECONNECT_GRACE_PERIOD`` is not set (Ray's own is
#: 30 s), so that jobs of a killed pytest are gone within 30 s.
CLIENT_GRACE_S = "15"
#: Ray Client's server starts one server process per client; when that process dies while
#: starting (a loaded head node), ``ray.init`` fails with this text, and a new try starts a new
#: process.  Connections that fail so are tried this many times, ``CLIENT_RETRY_S`` apart.
CLIENT_START_FAILED = "Initialization failure from server"
CLIENT_TRIES = 3
CLIENT_RETRY_S = 1.0

#: Log records of Ray's that a connection from a background thread makes (the SIGTERM handler
#: is left alone there, as the executor wants); Ray Client's server says the same.
_QUIET = ("SIGTERM handler is not set",)
#: Where Ray logs them: its worker, and Ray Client's copy of its server's log.
_QUIET_LOGGERS = ("ray._private.worker", "ray.util.client.logsclient")


def is_client(address: str) -> bool:
    """Whether ``address`` goes through Ray Client (``ray://``)."""
    return address.startswith("ray://")


def check_reachable(address: str) -> None:
    """A usage error within seconds when nothing answers at ``address``."""
    if address == "local":
        return
    target = address
    if address == "auto":
        try:
            from ray._private.services import canonicalize_bootstrap_address_or_die

            target = canonicalize_bootstrap_address_or_die("auto")
        except (ConnectionError, Exception) as exc:  # noqa: BLE001 - Ray raises several kinds
            raise pytest.UsageError(MSG_UNREACHABLE.format(address=address, why=exc)) from None
    if target.startswith("ray://"):
        target = target[len("ray://"):]
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        raise pytest.UsageError(
            MSG_UNREACHABLE.format(address=address, why="expected auto, HOST:PORT, "
                                   "ray://HOST:PORT or local"))
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_CHECK_S).close()
    except OSError as exc:
        raise pytest.UsageError(MSG_UNREACHABLE.format(address=address, why=exc)) from None


def runtime_env(rootdir: Path, output_dir: Path | None) -> dict[str, Any]:
    """The jobs' runtime environment: the rootdir, without what never travels (VCS,
    environments, caches, the output folder; .gitignore is honoured by Ray itself)."""
    excludes = list(EXCLUDES)
    if output_dir is not None:
        try:
            rel = Path(output_dir).resolve().relative_to(Path(rootdir).resolve())
            if str(rel) not in ("", "."):
                excludes.append("/" + rel.as_posix())
        except ValueError:
            pass
    return {"working_dir": str(rootdir), "excludes": excludes}


class _Quiet(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_QUIET)


_QUIET_FILTER = _Quiet()


def connect(address: str, env: dict[str, Any]) -> None:
    """``ray.init`` for this session; a ``pytest.UsageError`` when it cannot connect."""
    import ray

    check_reachable(address)
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).addFilter(_QUIET_FILTER)
    main = threading.current_thread() is threading.main_thread()
    previous_sigterm = signal.getsignal(signal.SIGTERM) if main else None  # ray.init sets one
    try:
        kwargs: dict[str, Any] = dict(runtime_env=env, log_to_driver=False,
                                      logging_level=logging.WARNING, configure_logging=True)
        if address == "local":
            kwargs.update(address="local", include_dashboard=False)
        else:
            if is_client(address):
                os.environ.setdefault("RAY_CLIENT_RECONNECT_GRACE_PERIOD", CLIENT_GRACE_S)
            if RAY_JOB_VAR in os.environ:
                # pytest runs as a Ray Job's entrypoint (``ray job submit --working-dir .``):
                # Ray refuses a second working_dir beside the job's unless told to let the
                # session's win.  The rootdir (inside the job's copy) then ships as in any
                # other session, the job's other settings (pip, env_vars) kept.
                os.environ.setdefault("RAY_OVERRIDE_JOB_RUNTIME_ENV", "1")
            kwargs.update(address=address)
        _init(ray, kwargs, tries=CLIENT_TRIES if is_client(address) else 1)
    except pytest.UsageError:
        raise
    except Exception as exc:  # noqa: BLE001 - ConnectionError, RuntimeError, ValueError ...
        raise pytest.UsageError(MSG_CONNECT_FAILED.format(address=address, why=exc)) from None
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous_sigterm)


def _init(ray: Any, kwargs: dict[str, Any], tries: int) -> None:
    """``ray.init(**kwargs)``, tried again (up to ``tries`` in all) when Ray Client's server
    failed to start this client's server process."""
    for attempt in range(1, tries + 1):
        try:
            ray.init(**kwargs)
            return
        except Exception as exc:  # noqa: BLE001 - Ray Client raises ConnectionError
            if attempt == tries or CLIENT_START_FAILED not in str(exc):
                raise
        try:
            ray.shutdown()
        except Exception:  # noqa: BLE001 - nothing was connected
            pass
        time.sleep(CLIENT_RETRY_S)


class Connection:
    """``ray.init`` in a background thread, or at once on this thread (``background=False``:
    ``--ray local``, whose private instance starts on the main thread, and an executor that
    found no background connection).  The package roots are probed meanwhile."""

    def __init__(self, address: str, rootdir: Path, output_dir: Path | None,
                 background: bool = True) -> None:
        self.address = address
        self.runtime_env = runtime_env(rootdir, output_dir)
        self.package_roots = PackageRoots(Path(rootdir))
        self.connected = threading.Event()
        self.error: BaseException | None = None
        self.used = False  #: an executor took it over (and disconnects it)
        self.thread: threading.Thread | None = None
        if background:
            self.thread = threading.Thread(target=self._run, name="ray-connect", daemon=True)
            self.thread.start()
        else:
            self._run()

    def _run(self) -> None:
        try:
            connect(self.address, self.runtime_env)
        except BaseException as exc:  # noqa: BLE001 - raised in the main thread by wait()
            self.error = exc
            self.connected.set()
            return
        try:
            import ray

            # Ray builds its serialization context (imports pyarrow, pydantic, numpy: a
            # quarter second) on first use; here, not on the first job's submission.
            ray.put(None)
        except Exception:  # noqa: BLE001 - only a head start; the jobs will tell
            pass
        finally:
            self.connected.set()

    def wait(self) -> None:
        """Block until connected; raise what connecting raised."""
        self.connected.wait()
        if self.error is not None and not isinstance(self.error, Exception):
            raise self.error  # KeyboardInterrupt while connecting on this thread
        if isinstance(self.error, pytest.UsageError):
            raise pytest.UsageError(str(self.error))
        if self.error is not None:
            raise pytest.UsageError(MSG_CONNECT_FAILED.format(address=self.address,
                                                              why=self.error))


_CONNECTION_KEY = pytest.StashKey[Connection]()


def preconnect(config: pytest.Config, settings: Settings) -> None:
    """Start connecting to ``settings.ray_address`` in the background; the executor picks
    the connection up.  Not for ``local`` (a private instance starts in the executor)."""
    address = settings.ray_address
    if address is None or address == "local" or _CONNECTION_KEY in config.stash:
        return
    config.stash[_CONNECTION_KEY] = Connection(address, settings.rootdir, settings.output_dir)


def take_connection(config: pytest.Config, settings: Settings) -> Connection:
    """The session's connection for an executor, connected: the background one when it
    was made for these settings, else one made now on this thread.  The executor that takes
    it disconnects it."""
    pre = config.stash.get(_CONNECTION_KEY, None)
    if pre is None or pre.used or pre.address != settings.ray_address:
        pre = Connection(str(settings.ray_address), settings.rootdir, settings.output_dir,
                         background=False)
    pre.used = True
    pre.wait()
    return pre


def end_preconnect(config: pytest.Config) -> None:
    """Disconnect a background connection no executor took over (the session ended early)."""
    pre = config.stash.get(_CONNECTION_KEY, None)
    if pre is None:
        return
    del config.stash[_CONNECTION_KEY]
    if pre.used:
        return
    if pre.thread is not None:
        pre.thread.join(CONNECT_CHECK_S + 60.0)
    if pre.error is None:
        try:
            import ray

            ray.shutdown()
        except Exception:  # noqa: BLE001
            pass
