"""One error family, so users can catch tenfold's complaints and nothing else.

Every message says what was wrong and what to do about it; callers raise these instead of letting a
traceback escape from deep inside numpy, torch or a file parser.
"""

from __future__ import annotations


class TenfoldError(Exception):
    """Base of every error tenfold raises on purpose."""


class DataError(TenfoldError):
    """A dataset path, file or array is missing, corrupt or has the wrong shape."""


class ModelError(TenfoldError):
    """An unknown model name, an incompatible checkpoint or an unsupported layer."""


class CheckpointError(TenfoldError):
    """A checkpoint cannot be read or written safely."""


class ConfigError(TenfoldError):
    """A configuration value is out of range or names something unknown."""
