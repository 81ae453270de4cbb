"""The package's exception types: the CLI maps every ``VislocError`` to one line and exit code 1."""


class VislocError(Exception):
    """Base class of every error the user can act on (bad input, missing map, missing backend)."""


class DatasetError(VislocError):
    """A CSV dataset or image folder cannot be used (missing columns, no rows, no readable images)."""


class ImageError(VislocError):
    """An image buffer or file cannot be decoded (unknown encoding, wrong size, corrupt bytes)."""


class MapError(VislocError):
    """A map folder is missing, half-written, of an unsupported format version, or inconsistent."""


class BackendError(VislocError):
    """An inference backend is unavailable or failed to load a model."""
