"""How the ``kdnas`` command reports a failure: one line on stderr, never a traceback.

Two kinds of failure end a command cleanly:

* bad input (a value out of range, an unknown name, a missing or foreign file, a name too
  long for the file system): exit status 2, like argparse's own usage errors;
* the environment failing under a correct command (a full disk, a read-only folder, a
  store the database engine cannot write), or the teacher's training failing: exit status 1.

Anything else is a defect of kdnas and keeps its traceback, so that it can be reported.
"""

from __future__ import annotations

import argparse
import errno
import sqlite3
from typing import NoReturn

__all__ = ["ENVIRONMENT_ERROR", "INPUT_ERROR", "OneLineParser", "describe_failure"]

#: Exit status of bad input (argparse's own).
INPUT_ERROR = 2
#: Exit status of a correct command that the environment (disk, file system) made fail.
ENVIRONMENT_ERROR = 1

# What the user can do about the commonest environmental failures, added to the message.
_HINTS: dict[int, str] = {
    errno.ENOSPC: "free some space and rerun the command (finished evaluations are kept)",
    errno.EDQUOT: "free some space and rerun the command (finished evaluations are kept)",
    errno.EROFS: "choose a writable location",
    errno.EACCES: "choose a location you may write to",
    errno.EPERM: "choose a location you may write to",
    errno.ENAMETOOLONG: "choose a shorter name",
}


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line: ``PROG: error: MESSAGE``.

    Sub-parsers inherit the class, so every ``kdnas`` sub-command reports this way.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(INPUT_ERROR, f"{self.prog}: error: {_one_line(message)} (see --help)\n")


def _one_line(text: str) -> str:
    # Messages quote input: control characters are escaped, and an over-long quoted value is
    # already shortened where it is quoted, so the message itself is kept whole.
    from kdnas.cli._console import one_line

    return one_line(text, limit=None)


def _os_error_text(error: OSError) -> str:
    reason = error.strerror or str(error)
    where = error.filename
    if where is not None:
        where = str(where)
        if len(where) > 120:  # an over-long name is the failure itself: show its start
            where = f"{where[:60]}...({len(where)} characters)"
        reason = f"{where}: {reason}"
    hint = _HINTS.get(error.errno or 0)
    return f"{reason}; {hint}" if hint else reason


def describe_failure(error: BaseException) -> tuple[int, str] | None:
    """The exit status and one-line message of ``error``, or None for a defect of kdnas.

    ``ValueError`` (kdnas's own input errors derive from it), ``FileNotFoundError`` and the
    CLI's ``UsageError`` are bad input; other ``OSError`` and ``sqlite3`` failures are the
    environment's.
    """
    from kdnas.cli import UsageError

    if isinstance(error, (UsageError, ValueError)):
        return INPUT_ERROR, _one_line(str(error))
    input_kinds = (FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError)
    if isinstance(error, input_kinds) or (
        isinstance(error, OSError) and error.errno == errno.ENAMETOOLONG
    ):
        return INPUT_ERROR, _one_line(_os_error_text(error))
    if isinstance(error, OSError):
        return ENVIRONMENT_ERROR, _one_line(_os_error_text(error))
    if isinstance(error, sqlite3.Error):
        text = str(error)
        if "disk is full" in text or "disk I/O error" in text:
            text += f"; {_HINTS[errno.ENOSPC]}"
        return ENVIRONMENT_ERROR, _one_line(text)
    from kdnas.train import TeacherTrainingError

    if isinstance(error, TeacherTrainingError):
        return ENVIRONMENT_ERROR, _one_line(str(error))
    if isinstance(error, MemoryError):
        return ENVIRONMENT_ERROR, "out of memory; ask for less (fewer candidates, smaller batches)"
    return None
