"""Exception types raised by ethnicmer.

Every error message names the file, row or sample at fault and what is wrong, so
that a researcher can fix the input without reading our code.
"""


class EthnicmerError(Exception):
    """Base class of every error ethnicmer raises on bad input or configuration."""


class ConfigError(EthnicmerError):
    """A study config is invalid: unknown key, wrong type, unset ``${VAR}``, bad path."""


class DataError(EthnicmerError):
    """A data source is invalid: missing column, frame, demographics, unreadable image."""


class ModelError(EthnicmerError):
    """A model cannot be built: unknown backbone, weights unavailable or incompatible."""


class DiskSpaceError(EthnicmerError):
    """A stage would write more than the disk holding its output folder has free."""


class StudyLockedError(EthnicmerError):
    """Another process is running the same study (``runs/<study>/.lock`` is held)."""


class FoldError(EthnicmerError):
    """A LOSO fold failed; the message names the row, seed and held-out subject."""


class FlowStageError(EthnicmerError):
    """Optical flow crashed on a sample for a reason other than its input (a library
    error); the message names the sample. Finished flow images stay cached."""
