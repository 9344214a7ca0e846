"""Running the app under gunicorn: worker count, shared secret and cross-worker metrics.

Each worker imports and builds the app after the fork (no preloading), so prometheus-client sees
``PROMETHEUS_MULTIPROC_DIR`` before its first metric exists and every worker opens its own Redis
connections. Workers are threaded (``gthread``): a long NDJSON batch occupies one thread, not a
whole worker, and the worker heartbeat keeps running meanwhile. A worker leaves a new connection
to a less busy sibling (``api.balanced_worker``), so keep-alive clients spread over all.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import re
import secrets
import shutil
import signal
import socket
import tempfile
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gunicorn import glogging
from gunicorn.app.base import BaseApplication

from api.config import load_settings, mailbox_setting, read_config_file
from api.heap import settle_heap
from api.pinned import Pins
from api.request_ids import RequestIdFilter
from engine.models import pin_single_threaded
from fatigue.errors import ConfigurationError
from fatigue.store import in_memory, masked_url
from fatigue.writable import unwritable

log = logging.getLogger(__name__)
CGROUP_CPU_MAX = "/sys/fs/cgroup/cpu.max"  # "<quota> <period>" or "max <period>"
LOG_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s req=%(request_id)s: %(message)s"
# gunicorn's default access line, then the request id the answer carried (api/request_ids.py).
ACCESS_LOG_FORMAT = (
    '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" req=%({x-request-id}o)s'
)
_LINK_TOKEN = re.compile(r"(^|\s)(/[upc]/)[^/\s?\"]+")  # an unsubscribe or click link's token
# A signed link token: a base64 payload, a timestamp and a 27-character signature, joined by dots.
_LONG_SEGMENT = re.compile(r"/[A-Za-z0-9_\-.%]{48,}(?=[/?\s\"]|$)")


@dataclass(frozen=True)
class ServeOptions:
    """How to run the server."""

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int | None = None
    # Two: on two cores four threads per worker answered no more, and in most runs their p99
    # was 350-550 ms against 25 ms (the threads queue for the interpreter lock).
    threads: int = 2
    timeout: int = 60
    access_log: bool = False


def usable_cores() -> int:
    """Return the cores this process may run on: its CPU affinity, within a cgroup CPU quota.

    ``os.cpu_count()`` counts the host's: in a 2-CPU container on a 64-core host it would start
    64 workers, each holding its own copy of the model.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = Path(CGROUP_CPU_MAX).read_text().split()[:2]
        if quota != "max":
            cores = min(cores, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass  # no cgroup v2 limit to read
    return max(1, cores)


def default_workers(store_url: str) -> int:
    """One worker per usable core against a shared store; exactly one on ``memory://``.

    Composing is CPU work and each worker's threads cover its waits on Redis; on two cores,
    three workers answered 15 % fewer composes than two (bench/bench_api_http.py).
    """
    if in_memory(store_url):
        return 1
    return max(2, usable_cores())


def check_workers(store_url: str, workers: int) -> None:
    """Refuse several workers on ``memory://``: each would keep its own, diverging state."""
    if workers < 1:
        raise ConfigurationError("--workers must be at least 1")
    if workers > 1 and in_memory(store_url):
        raise ConfigurationError(
            f"{workers} workers with RAPPORT_STORE_URL=memory:// would each keep their own "
            "fatigue state; use --workers 1 or a redis:// store"
        )


class RapportServer(BaseApplication):
    """gunicorn running ``api.create_app()`` in each worker."""

    def __init__(
        self, settings: dict[str, Any], on_reload: Callable[[], object] | None = None
    ) -> None:
        self.settings = settings
        self.on_reload = on_reload
        self._loaded = False
        super().__init__()

    def load_config(self) -> None:
        """Hand our settings to gunicorn (on SIGHUP again, after ``on_reload``)."""
        if self._loaded and self.on_reload is not None:
            self.on_reload()  # in the master, before the new workers are forked
        self._loaded = True
        for key, value in self.settings.items():
            self.cfg.set(key, value)
        if "control_socket_disable" in self.cfg.settings:
            # gunicorn >= 25 opens one control socket per user by default; two servers on a
            # machine (tests, benchmarks, blue/green) would fight over it.
            self.cfg.set("control_socket_disable", True)

    def load(self) -> Any:
        """Build the app inside the worker and load the model before taking traffic."""
        from api import create_app
        from api.services import services

        app = create_app()
        found = services(app)
        found.warm()
        # What this worker serves, for whoever reads the log after a deploy or an incident.
        log.info(
            "worker ready: model %s, store %s, rules %s",
            found.get("model").model.version,
            masked_url(str(app.config["STORE_URL"])),
            app.config.get("RULES") or "bundled defaults",
        )
        settle_heap()
        pin_single_threaded()  # one worker per core: threads under it only queue
        return app


def spread_batches(
    store_url: str, workers: int, environ: MutableMapping[str, str], cores: int | None = None
) -> None:
    """Give each worker cores // workers batch helpers when that is 2 or more, unless configured.

    One NDJSON stream otherwise uses one core (api/batch_pool.py). With one worker per core (the
    default) there are none; with fewer workers the helpers number about one per core (each
    holds its own model), and the workers mostly relay their answers.
    """
    if in_memory(store_url) or "RAPPORT_BATCH_PROCESSES" in environ:
        return
    config = environ.get("RAPPORT_CONFIG")
    if config and "BATCH_PROCESSES" in read_config_file(Path(config)):
        return
    helpers = (cores or usable_cores()) // workers
    if helpers >= 2:
        environ["RAPPORT_BATCH_PROCESSES"] = str(helpers)


def check_settings(settings: Mapping[str, Any]) -> None:
    """Build the cheap parts each worker builds first, so a bad setting stops here in one line.

    In a worker it is a traceback, the worker exits, and gunicorn stops. The app itself is not
    built here: its metrics must first exist in the workers, after the fork.
    """
    from api.auth import KeyRing
    from api.campaigns import CampaignRegistry
    from engine.render.links import LinkConfig, LinkSigner
    from fatigue.rules import default_rules, load_rules
    from fatigue.store import store_from_url

    LinkConfig(str(settings["PUBLIC_URL"]))
    for address in ("SENDER", "UNSUBSCRIBE_MAILTO"):
        mailbox_setting(settings, address)
    if settings.get("SECRET_KEY"):
        try:
            LinkSigner(str(settings["SECRET_KEY"]))
        except ConfigurationError as exc:  # the signer does not know which setting it came from
            raise ConfigurationError(f"RAPPORT_SECRET_KEY: {exc}") from exc
    templates = Path(str(settings["TEMPLATES_DIR"]))
    reason = unwritable(templates)  # else each worker died on it with a 48-line traceback
    if reason:
        raise ConfigurationError(f"RAPPORT_TEMPLATES_DIR {templates}: {reason}")
    store_url = str(settings["STORE_URL"])
    if not in_memory(store_url):  # a memory store would only warn twice
        try:
            store_from_url(store_url)  # parses the URL; connects only when first used
        except ValueError as exc:
            shown = masked_url(store_url)
            raise ConfigurationError(f"RAPPORT_STORE_URL {shown!r}: {exc}") from exc
    rules = load_rules(Path(str(settings["RULES"]))) if settings.get("RULES") else default_rules()
    # A cap scoped to a category no registered campaign has would silently never apply.
    CampaignRegistry.load(str(settings.get("CAMPAIGNS_FILE") or "")).check(rules)
    keys = Path(str(settings["API_KEYS_FILE"]))
    if not KeyRing(keys).current():  # served anyway: a key made later is read at once
        log.warning(
            "no API keys in %s: every API request is refused until 'rapport keys create' "
            "makes one there (check RAPPORT_API_KEYS_FILE)", keys,
        )  # fmt: skip


def share_secret(settings: Mapping[str, Any], environ: MutableMapping[str, str]) -> None:
    """Make every worker sign links with one key: the configured one, else a random one.

    ``settings`` come from the environment and the ``RAPPORT_CONFIG`` file alike; only when
    neither names a key is one made up (and links then die with this server).
    """
    if not settings.get("SECRET_KEY"):
        log.warning("no secret_key is configured: unsubscribe links die with this server")
        environ["RAPPORT_SECRET_KEY"] = secrets.token_urlsafe(32)


@dataclass
class WorkerChoices:
    """What the master decides for its workers itself: a generated secret, batch helpers.

    Set as ``RAPPORT_*`` variables, which outrank the configuration file, so a reload reads
    the settings without them and decides again: a ``secret_key`` added to the file takes
    over, removed it is generated, and a secret generated before is kept (links signed with
    it stay valid).
    """

    workers: int
    made: set[str] = field(default_factory=set)

    def apply(self, settings: Mapping[str, Any], environ: MutableMapping[str, str]) -> None:
        """Set the variables the configuration leaves to the master."""
        generated = environ.get(SECRET) if SECRET in self.made else None
        for name in self.made:
            environ.pop(name, None)
        self.made = set()
        if not settings.get("SECRET_KEY"):
            if generated:
                environ[SECRET] = generated
            else:
                share_secret(settings, environ)
            self.made.add(SECRET)
        if BATCH not in environ:
            spread_batches(str(settings["STORE_URL"]), self.workers, environ)
            if BATCH in environ:
                self.made.add(BATCH)

    def reload(self, pins: Pins, environ: MutableMapping[str, str]) -> None:
        """On SIGHUP: validate and pin the configuration as read without the master's choices."""
        settings = pins.repin(
            lambda found: load_settings({k: v for k, v in found.items() if k not in self.made}),
            self._check,
        )
        if settings is not None:
            self.apply(settings, environ)

    def _check(self, settings: Mapping[str, Any]) -> None:
        check_settings(settings)
        check_workers(str(settings["STORE_URL"]), self.workers)  # memory:// under several


SECRET = "RAPPORT_SECRET_KEY"
BATCH = "RAPPORT_BATCH_PROCESSES"


#: Paths polled by machines; their successful answers stay out of the access log.
QUIET_PROBES = frozenset({"/healthz", "/readyz", "/metrics"})


class RedactingLogger(glogging.Logger):
    """gunicorn's logger with the link tokens of /u/, /p/ and /c/ cut out of access lines.

    A token unsubscribes or redirects on behalf of one customer: it has no place in a log.
    """

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        """Log the request, unless it is a probe that succeeded.

        Load balancers and Prometheus ask every few seconds: thousands of identical lines a
        day that bury the requests someone is looking for. A failing probe is still logged.
        """
        status = getattr(resp, "status_code", None)
        quiet = isinstance(status, int) and 200 <= status < 300
        if quiet and environ.get("PATH_INFO") in QUIET_PROBES:
            return
        super().access(resp, req, environ, request_time)

    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        """Return gunicorn's access-log fields with link tokens replaced by an ellipsis."""
        found: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        for key in ("r", "U", "{raw_uri}e"):
            if isinstance(found.get(key), str):
                found[key] = redacted(found[key])
        return found


def redacted(request_line: str) -> str:
    """Return a request line or path with the token of a /u/, /p/ or /c/ link cut out.

    ``//u/<token>`` and ``/%75/<token>`` reach the same pages, so besides the links' own paths
    any segment long and token-shaped enough to be a signed link is cut, whatever precedes it.
    """
    return _LONG_SEGMENT.sub("/…", _LINK_TOKEN.sub(r"\1\2…", request_line))


def _ignore_interrupts(worker: Any) -> None:
    """Leave Ctrl-C to the master: a gthread worker interrupted while quitting could hang."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _child_exit(server: Any, worker: Any) -> None:
    """Drop a dead worker's live gauges from the shared metrics directory."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def check_port(host: str, port: int) -> None:
    """Refuse at once an address this process cannot listen on (another server holds it).

    gunicorn would retry for five seconds and exit with its own words; the demo would first
    have replaced its key, locking the running demo out. Bound as gunicorn binds
    (``SO_REUSEADDR``), so a port left in TIME_WAIT by a stopped server is not refused.
    """
    if host.startswith(("unix:", "fd://")):
        return
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        advice = ""
        if exc.errno == errno.EADDRINUSE:
            advice = "; another server is there: choose another port (--port, or make demo PORT=)"
        raise ConfigurationError(f"cannot listen on {host}:{port}: {reason}{advice}") from None


def run(options: ServeOptions, settings: Mapping[str, Any]) -> None:
    """Serve until interrupted."""
    store_url = str(settings["STORE_URL"])
    workers = options.workers or default_workers(store_url)
    check_workers(store_url, workers)
    # Rapport's own lines (model reloads, store failures) with time, level and worker pid.
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    for handler in logging.getLogger().handlers:
        handler.addFilter(RequestIdFilter())
    check_settings(settings)
    check_port(options.host, options.port)
    pins = Pins(os.environ)
    pins.pin(settings)
    choices = WorkerChoices(workers)
    choices.apply(settings, os.environ)
    metrics_dir = tempfile.mkdtemp(prefix="rapport-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    master = os.getpid()
    try:
        RapportServer(
            {
                "bind": f"{options.host}:{options.port}",
                "workers": workers,
                "worker_class": "api.balanced_worker.BalancedThreadWorker",
                "threads": options.threads,
                "timeout": options.timeout,
                "graceful_timeout": options.timeout,
                "keepalive": 5,
                "accesslog": "-" if options.access_log else None,
                "access_log_format": ACCESS_LOG_FORMAT,
                "logger_class": RedactingLogger,
                "post_worker_init": _ignore_interrupts,
                "child_exit": _child_exit,
            },
            on_reload=lambda: choices.reload(pins, os.environ),
        ).run()
    finally:
        # Workers are forked inside run() and a worker that exits cleanly (SIGHUP's reload, a
        # SIGTERM to one worker, max_requests) unwinds through here too: removing the directory
        # there broke every later worker's metrics, and gunicorn stopped on "failed to boot".
        if os.getpid() == master:
            shutil.rmtree(metrics_dir, ignore_errors=True)
            pins.remove()
