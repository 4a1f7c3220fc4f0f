"""Exceptions with one-line messages that name the offending file.

Users run stages over thousands of images; when one input is broken they need the path and the problem in a
single line, not a traceback from deep inside OpenCV.
"""

from __future__ import annotations

from pathlib import Path


class WSSSError(Exception):
    """Base class for errors wsss reports to the user as one line."""


class InputError(WSSSError):
    """A user-supplied file is missing, unreadable or inconsistent."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):  # picklable, so errors cross process-pool boundaries intact
        return (type(self), (self.path, self.problem))


class StageMismatchError(WSSSError):
    """A stage directory holds artifacts made with another config or other inputs."""


class ConfigError(WSSSError):
    """A config key has a value the stage cannot use, or a section/key is unknown (checked before any work)."""


class StageLockedError(WSSSError):
    """Another live process is running this stage into the same folder."""


class StageSkipped(WSSSError):
    """The stage cannot apply to this data (e.g. it needs ground-truth masks and there are none): the pipeline
    goes on without it, a stage tool exits 0 after one line."""
