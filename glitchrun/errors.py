"""What tells a user's mistake from a bug, wherever it was raised: here, in a Q-scan worker process, in any job.

A user's mistake is an exception of a kind glitchrun's checks raise (``ValueError``, ``RuntimeError``,
``OSError``, ``LookupError``) that glitchrun's own code raised: its message was written for the user. The
same kinds raised inside a library (numpy's ``ValueError``), and Python's own failed lookups (``KeyError``,
``IndexError``), are bugs. Where it was raised is read from the traceback, which does not survive a trip
between processes: ``portable`` records it on the exception (and makes sure the exception can be rebuilt
on the other side) before a worker lets it go. ``glitchrun.console`` turns the verdict into what the
terminal shows. Notes added with ``add_note`` (the context, e.g. which candidate) are part of the message.

This module imports nothing of glitchrun, so every layer may use it.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
#: the kinds of exception glitchrun's checks raise
CHECK_TYPES = (ValueError, RuntimeError, OSError, LookupError)
#: lookups Python itself fails (``mapping[key]``, ``seq[i]``): bugs even inside glitchrun's code
BUILTIN_LOOKUPS = (KeyError, IndexError)
#: attribute set by ``portable``: where the exception was raised, judged while its traceback was there
RAISED_BY_GLITCHRUN = "glitchrun_raised"


def raised_in(err: BaseException, package_dir: Path) -> bool:
    """Whether the code that raised ``err`` (its traceback's last frame) lies in ``package_dir``."""
    tb = err.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return Path(tb.tb_frame.f_code.co_filename).resolve().is_relative_to(package_dir)


def raised_by_glitchrun(err: BaseException) -> bool:
    """Whether glitchrun's own code raised ``err`` (a check's message), not a library below it."""
    marked = getattr(err, RAISED_BY_GLITCHRUN, None)
    return bool(marked) if marked is not None else raised_in(err, PACKAGE_DIR)


def is_check(err: BaseException) -> bool:
    """Whether ``err`` is one of glitchrun's checks failing: a mistake the user can fix, its message for them."""
    return isinstance(err, CHECK_TYPES) and not isinstance(err, BUILTIN_LOOKUPS) and raised_by_glitchrun(err)


def add_note(err: BaseException, note: str) -> BaseException:
    """Add ``note`` to ``err``'s notes (``BaseException.add_note`` of Python 3.11, kept by pickle)."""
    err.__notes__ = [*getattr(err, "__notes__", []), note]  # what add_note does, on 3.10 too
    return err


def message(err: BaseException) -> str:
    """``err``'s message and notes on one line."""
    text = " ".join(str(err).split()) or type(err).__name__
    return "; ".join([text, *(" ".join(n.split()) for n in getattr(err, "__notes__", []))])


def portable(err: BaseException, note: str | None = None) -> BaseException:
    """``err`` ready to leave a worker process: where it was raised recorded on it, ``note`` added, and
    rebuilt as a ``RuntimeError`` with its type and message when pickle cannot rebuild it as it is (an
    exception whose constructor takes other arguments than its message)."""
    setattr(err, RAISED_BY_GLITCHRUN, raised_by_glitchrun(err))
    if note:
        add_note(err, note)
    try:
        pickle.loads(pickle.dumps(err))
    except Exception:
        stand_in = RuntimeError(f"{type(err).__name__}: {err}")
        stand_in.__dict__.update({k: v for k, v in err.__dict__.items() if k in (RAISED_BY_GLITCHRUN, "__notes__")})
        return stand_in
    return err


def network_reason(err: BaseException) -> str:
    """A network failure's own cause in a few words (``ConnectionError: Failed to resolve 'gwosc.org' (...)``),
    without the layers requests and urllib3 wrap around it (``MaxRetryError``, the connection's repr)."""
    cause = err
    while True:
        inner = getattr(cause, "reason", None)
        if not isinstance(inner, BaseException):
            inner = next((arg for arg in cause.args if isinstance(arg, BaseException)), None)
        if inner is None or inner is cause:
            break
        cause = inner
    text = re.sub(r"^(<[^>]*>|\w+\([^)]*\)): ", "", " ".join(str(cause).split()))
    return f"{type(err).__name__}: {text or type(cause).__name__}"
