"""Errors that a user can act on: each message says what was wrong and what to do."""


class SafetySteerError(ValueError):
    """Base class: bad input that the user can fix (a file, a prompt list, a model name)."""


class PackFormatError(SafetySteerError):
    """A file that is not a valid Safety Steer direction pack."""


class PromptDataError(SafetySteerError):
    """A prompt file or list that cannot be used (empty, malformed, unknown category)."""


class SourceModelError(SafetySteerError):
    """A source model that cannot be found or loaded."""


class FileFormatError(SafetySteerError):
    """A file that cannot be read as the Safety Steer file it should be (damaged, truncated, edited)."""


class FileWriteError(SafetySteerError):
    """A file that cannot be written (read-only or missing folder, full disk)."""
