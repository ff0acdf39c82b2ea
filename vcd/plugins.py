"""Plugin loading (shipped, entry points, plugin folders) and safe per-plugin hook dispatch."""

from __future__ import annotations

import copy
import importlib
import importlib.metadata
import importlib.util
import logging
import pkgutil
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from vcd import hookspecs
from vcd.config import Config
from vcd.controls import Controls
from vcd.errors import ConfigError, PluginError, VcdError, did_you_mean, one_line

_LOGGER = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "vcd"
SHIPPED_PACKAGE = "vcd_plugins"
STUCK_AFTER_S = 5.0  # a plugin busy this long with one event is reported
REPEAT_WINDOW_S = 60.0  # a failure repeated within this long after its traceback is only counted


@dataclass
class LoadedPlugin:
    """A registered plugin: its name, where it came from, and the hooks it implements."""

    name: str
    source: str  # "shipped", "entry point DIST VERSION" or the file path
    module: Any
    hooks: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Candidate:
    name: str
    source: str
    load: Callable[[], Any]


def _shipped_candidates() -> dict[str, _Candidate]:
    try:
        package = importlib.import_module(SHIPPED_PACKAGE)
    except ImportError:
        _LOGGER.warning("the shipped plugin package %s is not installed", SHIPPED_PACKAGE)
        return {}
    found = {}
    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_"):
            module_name = f"{SHIPPED_PACKAGE}.{info.name}"
            found[info.name] = _Candidate(info.name, "shipped", lambda m=module_name: importlib.import_module(m))
    return found


def _entry_point_candidates() -> list[_Candidate]:
    found = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = f" {ep.dist.name} {ep.dist.version}" if ep.dist is not None else ""
        found.append(_Candidate(ep.name, f"entry point{dist}", ep.load))
    return found


def _load_file(path: Path) -> ModuleType:
    module_name = f"vcd_plugin_file_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def _dir_candidates(dirs: tuple[Path, ...]) -> list[_Candidate]:
    found = []
    for folder in dirs:
        for path in sorted(folder.glob("*.py")):
            if not path.name.startswith("_"):
                found.append(_Candidate(path.stem, str(path), lambda p=path: _load_file(p)))
    return found


def _failure(exc: BaseException) -> str:
    """What went wrong in a plugin's own code, for a one-line error: ``RuntimeError: …`` or ``it called sys.exit(3)``."""
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r})"
    return f"{type(exc).__name__}: {exc}"


def _describe(hook: str, kwargs: dict[str, Any]) -> str:
    """What an event is about, for log lines."""
    if hook == "vcd_intent":
        return f"intent {kwargs.get('intent')} ({kwargs.get('text')!r})"
    if hook in ("vcd_transcript", "vcd_unrecognized"):
        return f"{hook[4:]} {kwargs.get('text')!r}"
    if hook == "vcd_speech_ended":
        return f"speech end ({kwargs.get('audio_s', 0):.2f} s)"
    return hook[4:].replace("_", " ")


class FailureLog:
    """Logs repeated plugin failures without flooding the log.

    The first failure of a plugin in a hook (per exception type) is logged
    with its traceback; the same failure again within ``window_s`` is only
    counted, and the count is logged in one line when the window is over
    (:meth:`flush`, called about every second and at shutdown):
    ``plugin "X" raised in vcd_intent 19 more times in the last 60 s (last: RuntimeError: …)``.
    Thread-safe: the plugin workers and the main thread report to one log.
    """

    def __init__(self, window_s: float = REPEAT_WINDOW_S) -> None:
        self.window_s = window_s
        self._lock = threading.Lock()
        # (plugin, hook, exception type) -> [window start, repeats since, last message]
        self._open: dict[tuple[str, str, str], list[Any]] = {}

    def failed(self, plugin: str, hook: str, what: str, exc: BaseException) -> None:
        """Report that ``plugin`` raised ``exc`` in ``hook`` while handling ``what``; call from an ``except`` block."""
        key = (plugin, hook, type(exc).__name__)
        now = time.monotonic()
        self.flush(now)
        with self._lock:
            entry = self._open.get(key)
            if entry is not None:
                entry[1] += 1
                entry[2] = f"{type(exc).__name__}: {exc}"
                return
            self._open[key] = [now, 0, ""]
        _LOGGER.error('plugin "%s": %s failed while handling %s', plugin, hook, what, exc_info=exc)

    def flush(self, now: float | None = None, everything: bool = False) -> None:
        """Log the counts of the windows that are over (``everything``: of all, at shutdown)."""
        now = time.monotonic() if now is None else now
        lines = []
        with self._lock:
            for key, (start, repeats, last) in list(self._open.items()):
                if everything or now - start >= self.window_s:
                    del self._open[key]
                    if repeats:
                        lines.append((key, repeats, now - start, last))
        for (plugin, hook, _), repeats, span, last in lines:
            _LOGGER.error(
                'plugin "%s" raised in %s %d more time%s in the last %.0f s (last: %s)',
                plugin, hook, repeats, "" if repeats == 1 else "s", span, last,
            )


class _InFlight:
    """Events offered to any worker and not yet handled, counted across all workers.

    A handler that dispatches (``controls.say`` → ``vcd_say`` → ``vcd_said``) offers its events before
    its own one is counted as done, so the count reaches zero only when no chain of events is still
    running: what :meth:`PluginHost.drain` waits for before it closes the queues.
    """

    def __init__(self) -> None:
        self._count = 0
        self._idle = threading.Condition()

    def add(self) -> None:
        with self._idle:
            self._count += 1

    def done(self) -> None:
        with self._idle:
            self._count -= 1
            if self._count == 0:
                self._idle.notify_all()

    def wait_idle(self, timeout_s: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._count == 0, timeout=max(0.0, timeout_s))


class _Worker:
    """One plugin's thread and bounded event queue."""

    def __init__(self, name: str, queue_size: int, failures: FailureLog | None = None,
                 in_flight: _InFlight | None = None) -> None:
        self.name = name
        self.in_flight = in_flight or _InFlight()
        self.failures = failures or FailureLog()
        self._marker_queued = False  # close() put the stop marker, which qsize() counts
        self.queue: queue.Queue[tuple[Any, str, dict[str, Any]] | None] = queue.Queue(maxsize=queue_size)
        self.dropped = 0
        self.busy_since: float | None = None
        self.busy_with = ""
        self._warned = False
        self.thread = threading.Thread(target=self._run, name=f"vcd-plugin-{name}", daemon=True)
        self.thread.start()

    def offer(self, impl: Any, hook: str, kwargs: dict[str, Any]) -> None:
        self.in_flight.add()
        try:
            self.queue.put_nowait((impl, hook, kwargs))
        except queue.Full:
            self.in_flight.done()
            self.dropped += 1
            _LOGGER.warning(
                'plugin "%s": queue full (still busy with %s); dropped %s (%d dropped so far)',
                self.name,
                self.busy_with or "?",
                _describe(hook, kwargs),
                self.dropped,
            )

    def close(self) -> None:
        try:
            self.queue.put_nowait(None)
            self._marker_queued = True
        except queue.Full:
            pass  # a stuck plugin: its daemon thread dies with the process

    def waiting(self) -> int:
        """Events queued and not yet started (the stop marker is not an event)."""
        return max(0, self.queue.qsize() - (1 if self._marker_queued else 0))

    def check_stuck(self, now: float) -> None:
        since = self.busy_since
        if since is not None and now - since > STUCK_AFTER_S and not self._warned:
            self._warned = True
            _LOGGER.warning(
                'plugin "%s": still handling %s after %.0f s; %d events waiting for it',
                self.name,
                self.busy_with,
                now - since,
                self.waiting(),
            )

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            impl, hook, kwargs = item
            self.busy_with = _describe(hook, kwargs)
            self.busy_since = time.monotonic()
            self._warned = False
            try:
                impl.function(*[kwargs[a] for a in impl.argnames])
            except Exception as exc:  # noqa: BLE001 (logged with its traceback by FailureLog)
                self.failures.failed(self.name, hook, self.busy_with, exc)
            finally:
                self.busy_since = None
                self.busy_with = ""
                self.in_flight.done()


class PluginHost:
    """The loaded plugins and their workers; call :meth:`dispatch` from any thread."""

    def __init__(self, pm: pluggy.PluginManager, loaded: list[LoadedPlugin], queue_size: int = 64) -> None:
        self.pm = pm
        self.loaded = loaded
        self.queue_size = queue_size
        self._workers: dict[str, _Worker] = {}
        self._started: list[str] = []
        self.failures = FailureLog()
        self._in_flight = _InFlight()

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.loaded]

    def _impls(self, hook: str) -> list[Any]:
        return getattr(self.pm.hook, hook).get_hookimpls()

    @staticmethod
    def _call_config_hook(impl: Any, hook: str, config: Config, what: str, **extra: Any) -> None:
        """Call one plugin's ``vcd_check_config``/``vcd_startup``; any non-vcd exception becomes a one-line VcdError."""
        kwargs = {"config": config, "config_path": config.path, **extra}
        try:
            impl.function(*[kwargs[a] for a in impl.argnames])
        except VcdError:
            raise
        except (Exception, SystemExit) as exc:  # a plugin's sys.exit() must not end vcd without a word
            if not isinstance(exc, SystemExit):  # a bug in the plugin: its traceback goes to the log
                _LOGGER.exception('plugin "%s": %s failed', impl.plugin_name, hook)
            raise VcdError(one_line(f'plugin "{impl.plugin_name}": {what} failed: {_failure(exc)}')) from exc

    def check_config(self, config: Config) -> None:
        """Call ``vcd_check_config`` of each plugin; the first failure is raised as a one-line error."""
        for impl in self._impls("vcd_check_config"):
            self._call_config_hook(impl, "vcd_check_config", config, "configuration check")

    def startup(self, config: Config, controls: Controls | None = None) -> None:
        """Call ``vcd_startup`` of each plugin on this thread; the first failure aborts start-up.

        Each plugin gets its own handle on ``controls`` (a fresh :class:`Controls` when None).
        Plugins already started are shut down again before the error propagates.
        """
        controls = controls or Controls()
        controls.connect(self.dispatch, lambda: bool(self._impls("vcd_say")), config.daemon.site)
        for impl in self._impls("vcd_startup"):  # registration order
            try:
                self._call_config_hook(impl, "vcd_startup", config, "start-up",
                                       controls=controls.for_plugin(impl.plugin_name))
            except VcdError:
                self.shutdown("start-up failed", only=self._started)
                raise
            self._started.append(impl.plugin_name)
        self._started = self.names

    def start_workers(self) -> None:
        """Start one worker thread per plugin that implements an event hook."""
        for plugin in self.loaded:
            if set(plugin.hooks) - {"vcd_check_config", "vcd_startup", "vcd_shutdown", "vcd_health"}:
                self._workers[plugin.name] = _Worker(plugin.name, self.queue_size, self.failures, self._in_flight)

    def dispatch(self, hook: str, **kwargs: Any) -> None:
        """Queue ``hook(**kwargs)`` for every plugin implementing it; never blocks, never raises."""
        for impl in self._impls(hook):
            worker = self._workers.get(impl.plugin_name)
            if worker is None:
                _LOGGER.error('plugin "%s": no worker for %s; event ignored', impl.plugin_name, hook)
                continue
            worker.offer(impl, hook, copy.deepcopy(kwargs))

    def check_stuck(self) -> None:
        """Report plugins busy with one event too long, and the counts of repeated failures that are due."""
        now = time.monotonic()
        for worker in self._workers.values():
            worker.check_stuck(now)
        self.failures.flush(now)

    def health(self) -> list[str]:
        """Call ``vcd_health`` of every started plugin; the problems they report, each prefixed with the plugin's name.

        A plugin that raises is reported as a problem (its traceback logged,
        repeats rate-limited like any hook failure).
        """
        problems = []
        for impl in self._impls("vcd_health"):
            if impl.plugin_name not in self._started:
                continue
            try:
                problem = impl.function()
            except Exception as exc:  # noqa: BLE001 (logged with its traceback by FailureLog)
                self.failures.failed(impl.plugin_name, "vcd_health", "a health check", exc)
                problem = f"vcd_health failed: {type(exc).__name__}: {exc}"
            if problem:
                problems.append(f'plugin "{impl.plugin_name}": {problem}')
        return problems

    def workers_alive(self) -> bool:
        return all(w.thread.is_alive() for w in self._workers.values())

    def drain(self, timeout_s: float) -> bool:
        """Let every worker finish its queued events, and the events those dispatch in turn (a ``vcd_said``
        answering a ``vcd_say``); True when all did within ``timeout_s``.  Then the queues close."""
        deadline = time.monotonic() + timeout_s
        self._in_flight.wait_idle(timeout_s)
        for worker in self._workers.values():
            worker.close()
        done = True
        for worker in self._workers.values():
            worker.thread.join(timeout=max(0.0, deadline - time.monotonic()))
            if worker.thread.is_alive():
                done = False
                _LOGGER.warning(
                    'plugin "%s": still handling %s at shutdown; %d events not delivered',
                    worker.name,
                    worker.busy_with or "its queue",
                    worker.waiting(),
                )
        self.failures.flush(everything=True)
        return done

    def shutdown(self, reason: str, timeout_s: float = 1.2, only: list[str] | None = None) -> None:
        """Call ``vcd_shutdown`` of every started plugin, each on its own thread, all within ``timeout_s``."""
        started = set(self._started if only is None else only)
        threads = []
        for impl in self._impls("vcd_shutdown"):
            if impl.plugin_name not in started:
                continue

            def call(impl: Any = impl) -> None:
                try:
                    kwargs = {"reason": reason}
                    impl.function(*[kwargs[a] for a in impl.argnames])
                except Exception:
                    _LOGGER.exception('plugin "%s": vcd_shutdown failed (reason: %s)', impl.plugin_name, reason)

            thread = threading.Thread(target=call, name=f"vcd-shutdown-{impl.plugin_name}", daemon=True)
            thread.start()
            threads.append((impl.plugin_name, thread))
        deadline = time.monotonic() + timeout_s
        for name, thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                _LOGGER.warning('plugin "%s": vcd_shutdown did not return within %.1f s', name, timeout_s)
        self._started = []


def load_plugins(config: Config) -> PluginHost:
    """Import and register the plugins the configuration asks for; idempotent per call.

    Shipped plugins load when named in ``plugins.enabled``; entry-point and
    folder plugins load unless named in ``plugins.disabled``.  Raises
    :class:`PluginError` (exit 78) for a plugin that fails to import or
    implements an unknown hook, :class:`ConfigError` for an unknown name.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    settings = config.plugins
    shipped = _shipped_candidates()
    others = _entry_point_candidates() + _dir_candidates(settings.dirs)
    other_names = {c.name for c in others}
    _check_tables(config, set(shipped) | other_names)
    for name in settings.enabled:
        if name not in shipped and name not in other_names:
            available = ", ".join(sorted(set(shipped) | other_names)) or "none"
            raise ConfigError(
                f'{config.label}: plugins.enabled: no plugin named "{name}" (available: {available})'
            )
    wanted = [shipped[n] for n in settings.enabled if n in shipped] + others
    loaded: list[LoadedPlugin] = []
    seen: dict[str, str] = {}
    for cand in wanted:
        if cand.name in settings.disabled:
            _LOGGER.debug('"%s" (%s) is disabled by plugins.disabled', cand.name, cand.source)
            continue
        if cand.name in seen:
            if seen[cand.name] == cand.source:
                continue
            raise PluginError(f'plugin "{cand.name}" is found twice: {seen[cand.name]} and {cand.source}')
        try:
            module = cand.load()
        except (Exception, SystemExit) as exc:  # sys.exit() at import time as well
            _LOGGER.debug('plugin "%s" (%s) failed to import', cand.name, cand.source, exc_info=True)
            raise PluginError(one_line(f'plugin "{cand.name}" failed to import: {_failure(exc)}')) from exc
        try:
            pm.register(module, name=cand.name)
        except pluggy.PluginValidationError as exc:
            detail = "; ".join(str(exc).splitlines()[1:]) or str(exc)
            raise PluginError(one_line(f'plugin "{cand.name}" ({cand.source}): {detail}')) from exc
        seen[cand.name] = cand.source
        callers = pm.get_hookcallers(module) or []
        for caller in callers:
            if not caller.has_spec():
                hint = did_you_mean(caller.name, [n for n in dir(hookspecs) if n.startswith("vcd_")], quote=False)
                raise PluginError(f'plugin "{cand.name}" ({cand.source}): unknown hook {caller.name}{hint}')
        hooks = sorted(hc.name for hc in callers)
        loaded.append(LoadedPlugin(cand.name, cand.source, module, hooks))
        _LOGGER.debug('loaded "%s" from %s (hooks: %s)', cand.name, cand.source, ", ".join(hooks) or "none")
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(one_line(f'plugin "{pm.get_name(exc.plugin)}": {exc}')) from exc
    _warn_idle_tables(config, {p.name for p in loaded})
    return PluginHost(pm, loaded, settings.queue_size)


def _check_tables(config: Config, known: set[str]) -> None:
    """A ``[plugins.NAME]`` table for a plugin that exists nowhere is a misspelling: ConfigError, exit 78.

    Without this check ``[plugins.mqqt]`` would be ignored and MQTT would publish nothing.
    """
    for name in config.plugins.tables:
        if name not in known:
            hint = did_you_mean(name, known) or f" (plugins: {', '.join(sorted(known)) or 'none'})"
            raise ConfigError(one_line(f"{config.label}: plugins.{name}: unknown plugin table{hint}"))


def _warn_idle_tables(config: Config, loaded: set[str]) -> None:
    """One warning per ``[plugins.NAME]`` table of a plugin that exists but is not loaded (not enabled, disabled)."""
    for name in config.plugins.tables:
        if name not in loaded:
            why = "plugins.disabled names it" if name in config.plugins.disabled else "it is not in plugins.enabled"
            _LOGGER.warning(
                one_line(f'{config.label}: plugins.{name}: the plugin "{name}" is not loaded ({why}); table ignored')
            )
