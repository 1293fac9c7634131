"""What a person at the terminal sees: glitchrun's own flags, one or two lines for a mistake they can fix,
the traceback of a bug, and third-party warnings in the run's log rather than on the screen.

A user's mistake (a bad file or config value, missing credentials, an unreachable server, Zooniverse refusing
a request) ends the command with ``glitchrun: <what is wrong>`` on stderr and exit code 2; its traceback goes
to the run's log file, and to the terminal too with ``GLITCHRUN_DEBUG=1``. Anything else is a bug: it keeps
its traceback on the terminal and exits 1. Hydra is told to raise (``HYDRA_FULL_ERROR``) instead of printing
its own summary, so every error is printed once, here.
"""

from __future__ import annotations

import difflib
import logging
import os
import shutil
import sys
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import hydra
import requests
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import (
    ConfigCompositionException,
    HydraException,
    InstantiationException,
    MissingConfigException,
    OverrideParseException,
)
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from panoptes_client.panoptes import PanoptesAPIException

import glitchrun
from glitchrun.config import parameters, unknown_key
from glitchrun.errors import is_check, network_reason, raised_in
from glitchrun.errors import message as one_line

DEBUG_ENV = "GLITCHRUN_DEBUG"
#: exit codes: a mistake the user can fix, and Ctrl-C
USER_ERROR, INTERRUPTED = 2, 130
HYDRA_DIR = Path(hydra.__file__).resolve().parent
OVERRIDE_GRAMMAR = "https://hydra.cc/docs/advanced/override_grammar/basic/"
#: config mappings keyed by the user's own names (survey choice ids), which an ordinary override extends
OPEN_TABLES = ("campaign.workflow.choices",)


class Reported(SystemExit):
    """A user's mistake, its traceback already in the run's log; raised through Hydra as an exit, so Hydra
    neither reports it nor runs the job's end callbacks."""

    def __init__(self, message: str, log_file: str | None = None) -> None:
        super().__init__(USER_ERROR)
        self.message = message
        self.log_file = log_file


def debugging() -> bool:
    return os.environ.get(DEBUG_ENV, "").lower() not in ("", "0", "false", "no")


def command(hydra_main: Callable[[], Any], argv: list[str] | None = None) -> None:
    """The ``glitchrun`` command: ``--version`` and ``--copy-config DIR`` here, the rest through Hydra."""
    argv = sys.argv[1:] if argv is None else argv
    if "--version" in argv:
        print(f"glitchrun {glitchrun.__version__} (Hydra {hydra.__version__})")
        return
    if "--copy-config" in argv:
        where = argv[argv.index("--copy-config") + 1:]
        try:
            print(copy_config(where[0] if where else ""))
        except ValueError as err:
            sys.exit(report(str(err)))
        return
    os.environ["HYDRA_FULL_ERROR"] = "1"
    sys.argv = [sys.argv[0], *open_tables(argv)]
    try:
        hydra_main()
    except Reported as done:
        if debugging() and done.__cause__ is not None:
            traceback.print_exception(done.__cause__)
        sys.exit(report(done.message, done.log_file))
    except KeyboardInterrupt:
        print("glitchrun: interrupted", file=sys.stderr)
        sys.exit(INTERRUPTED)
    except Exception as err:  # before the job ran: composing the config
        said = user_message(err) or hydra_refused(err)
        if said is None:
            raise
        if debugging():
            traceback.print_exception(err)
        sys.exit(report(said))


def open_tables(overrides: list[str]) -> list[str]:
    """Overrides of a table keyed by the user's own names (``OPEN_TABLES``) as Hydra takes them: ``TABLE.KEY=V``
    adds or changes one entry (``++``), ``TABLE=V`` replaces the whole table (``~TABLE`` then ``+TABLE=V``).
    Hydra alone refuses a key its config does not have unless it is written with a ``+``."""
    taken = []
    for override in overrides:
        key, equals, _ = override.partition("=")
        if equals and not key.startswith(("+", "~", "-")):
            table = next((t for t in OPEN_TABLES if key == t or key.startswith(t + ".")), None)
            if table == key:
                taken.append(f"~{table}")
                override = f"+{override}"
            elif table is not None:
                override = f"++{override}"
        taken.append(override)
    return taken


def report(message: str, log_file: str | None = None) -> int:
    """Print a user error's one line (and where its traceback is); the exit code."""
    print(f"glitchrun: {message}", file=sys.stderr)
    if log_file and not debugging():
        print(f"  (traceback in {log_file}; {DEBUG_ENV}=1 prints it here)", file=sys.stderr)
    return USER_ERROR


class TerminalFormatter(logging.Formatter):
    """One short line per event at the terminal: the message, after ``warning:`` or ``error:`` for those (the
    run's ``glitchrun.log`` keeps the time and the logger of each)."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return f"{record.levelname.lower()}: {text}" if record.levelno >= logging.WARNING else text


class RepeatedWarnings(logging.Filter):
    """Lets the first of identical warnings through and counts the others, for one line at the end."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: Counter[str] = Counter()

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        self.seen[text] += 1
        return self.seen[text] == 1

    def summary(self) -> list[str]:
        return [f"the warning {text.splitlines()[0]!r} was given {count} times (logged once)"
                for text, count in self.seen.items() if count > 1]


@contextmanager
def job_console() -> Iterator[None]:
    """Around the job, in its run: warnings go to the log file only, each distinct one once with its count; a
    failure's traceback goes there too, and a user's mistake leaves as ``Reported``."""
    files = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    logging.captureWarnings(True)
    warnings_log = logging.getLogger("py.warnings")
    warnings_log.handlers, warnings_log.propagate = list(files), False
    repeated = RepeatedWarnings()
    warnings_log.addFilter(repeated)
    try:
        yield
    except Exception as err:
        record = logging.LogRecord("glitchrun", logging.ERROR, __file__, 0, "job failed", None, sys.exc_info())
        for handler in files:
            handler.handle(record)
        message = user_message(err)
        if message is None:
            raise
        raise Reported(message, files[0].baseFilename if files else None) from err
    finally:
        warnings_log.removeFilter(repeated)
        for line in repeated.summary():
            warnings_log.warning(line)


def user_message(err: BaseException) -> str | None:
    """One line saying what is wrong, when ``err`` is a mistake the user can fix; None for a bug."""
    while isinstance(err, InstantiationException) and err.__cause__ is not None:
        err = err.__cause__
    if isinstance(err, (ConfigCompositionException, MissingConfigException, OverrideParseException)):
        return composition_message(err)
    if isinstance(err, PanoptesAPIException):
        return f"Zooniverse refused the request: {one_line(err)}"
    if isinstance(err, (requests.ConnectionError, requests.Timeout)):
        return unreachable_message(err)
    if isinstance(err, (HydraException, OmegaConfBaseException)):
        return one_line(err)
    if isinstance(err, OSError) and err.filename is not None:
        return f"{err.strerror or one_line(err)}: {err.filename}"
    if is_check(err):
        return one_line(err)
    return None


def unreachable_message(err: requests.RequestException) -> str:
    """A network failure: which host, why (refused, not resolved, timed out), and how to work without it (the
    embedded Zooniverse)."""
    url = err.request.url if err.request is not None else None
    host = urlsplit(url).netloc if url else "the server"
    return (f"cannot reach {host} ({network_reason(err)}, on {url or 'a request'}); check the network and "
            "backend.endpoint, or work offline on the embedded Zooniverse (backend=local)")


def hydra_refused(err: BaseException) -> str | None:
    """A composition error Hydra raises as a plain exception (not one of its own types): one line."""
    if not isinstance(err, ValueError) or not raised_in(err, HYDRA_DIR):
        return None
    hint = ("; to drop a config group an experiment chose, delete it: '~group' (e.g. '~images/strain')"
            if "Got NoneType" in str(err) else "")
    return f"cannot compose the config: {one_line(err)}{hint}"


def composition_message(err: HydraException) -> str:
    """Hydra's composition errors in one line: a misspelt key with the nearest real one, an unknown option
    with the options, an override Hydra cannot parse with where its grammar is."""
    cause = err.__cause__
    if isinstance(err, MissingConfigException) and err.options is not None and err.missing_cfg_file:
        group, _, option = str(err.missing_cfg_file).rpartition("/")
        close = difflib.get_close_matches(option, err.options, n=1, cutoff=0.5)
        hint = f"did you mean {group}={close[0]}? " if close else ""
        return f"{group} has no option {option!r}; {hint}options: {', '.join(err.options)}"
    if isinstance(err, OverrideParseException):
        return f"cannot read the command line: {one_line(err).split(' See ')[0]}; see {OVERRIDE_GRAMMAR}"
    if isinstance(cause, OmegaConfBaseException) and isinstance(cause.parent_node, DictConfig) and cause.key:
        node, key = cause.parent_node, str(cause.key)
        parent = str(cause.full_key).rpartition(".")[0]
        names = [str(k) for k in node if str(k) != "hydra"]
        target = node.get("_target_") if "_target_" in node else None
        if target is not None:
            taken = parameters(hydra.utils.get_method(str(target)))[0]
            if key in taken:
                return f"{cause.full_key} is not set in the YAML of {parent}; add it with +{cause.full_key}=VALUE"
            names += list(taken)
        return unknown_key(key, parent, set(names))
    return one_line(err)


def copy_config(directory: str) -> str:
    """Copy the shipped ``conf/`` to a new ``directory``; the message saying how to use it."""
    if not directory:
        raise ValueError("--copy-config needs a directory: glitchrun --copy-config my_conf")
    target = Path(directory)
    if target.exists():
        raise ValueError(f"{target} already exists; choose a new directory for the copy")
    shutil.copytree(config_dir(), target, ignore=shutil.ignore_patterns("__init__.py", "__pycache__"))
    return (f"copied the configs to {target}/; run with them: glitchrun --config-path {target.resolve()} "
            "(edit config.yaml and the group folders there)")


def config_dir() -> Path:
    """Where the shipped YAML configs are (the checkout's conf/ for an editable install)."""
    return Path(str(resources.files("glitchrun.conf")))


def config_groups_help(_root_: DictConfig) -> str:
    """The config groups for ``--help``: each with its options, the default first (``null`` for a group the
    defaults leave empty, e.g. warm_start); overlays (groups not in the defaults, e.g. experiment) shown with
    the ``+`` that adds them."""
    loader = GlobalHydra.instance().config_loader()
    choices = _root_.hydra.runtime.choices
    lines = []
    for group in sorted(g for g in loader.list_groups("") if g != "hydra"):
        options = loader.get_group_options(group)
        default = choices.get(group)
        if default is None and group in choices:
            lines.append(f"  {group + '=':<13}null (default: none), {', '.join(options)}")
        elif default is None:
            lines.append(f"  {'+' + group + '=':<13}{', '.join(options)}   (an overlay: add it with the +)")
        else:
            others = "".join(f", {o}" for o in options if o != default)
            lines.append(f"  {group + '=':<13}{default} (default){others}")
    return "\n".join(lines)


OmegaConf.register_new_resolver("glitchrun_config_groups", config_groups_help, replace=True)
OmegaConf.register_new_resolver("glitchrun_config_dir", lambda: str(config_dir()), replace=True)
