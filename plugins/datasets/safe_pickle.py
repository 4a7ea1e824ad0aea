"""Load the Planetoid pickles without letting a pickle run code.

A pickle names the callables it wants invoked while loading; a hostile file can
name ``os.system``. :func:`safe_load` resolves names only from a fixed allow-list:
the few numpy/scipy/builtins objects that sparse matrices, numpy arrays and the
adjacency ``defaultdict(list)`` of the Planetoid files need. Anything else is
refused with :class:`zoo.errors.DataError` before it is even imported.

The list was found by loading every raw Cora file through a recording unpickler
(files written by Python 2, so ``encoding="latin1"``)::

    numpy.core.multiarray._reconstruct   numpy.ndarray   numpy.dtype
    scipy.sparse.csr.csr_matrix          collections.defaultdict
    __builtin__.list

It adds the names that numpy 2 / scipy >= 1.8 / Python 3 write for the same
objects (``numpy._core.multiarray``, ``scipy.sparse._csr``, ``builtins``), so that
copies re-pickled by Python 3 with protocol 3 or 4 load too (protocol 2 from
Python 3 would also need ``_codecs.encode`` and protocol 5 numpy's
``_frombuffer``; neither is allowed), and numpy's scalar constructor, which numpy
emits for any numpy scalar (e.g. a shape stored as ``numpy.int64``). None of these
can reach the file system, a shell or an import: each only builds an array, a
dtype, a scalar, a CSR matrix, a list or a defaultdict from data in the stream.
"""

from __future__ import annotations

import io
import os
import pickle
from functools import cache
from typing import Any

from zoo.errors import DataError


@cache
def allowed_globals() -> dict[tuple[str, str], Any]:
    """Return the allow-list: ``(module, name)`` as written in a pickle -> object."""
    import collections

    import numpy as np
    import scipy.sparse as sp

    # Import the implementation from wherever this numpy keeps it, so neither
    # numpy 1 nor numpy 2 needs the deprecated alias module the pickle names.
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray  # type: ignore[no-redef]

    table: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("collections", "defaultdict"): collections.defaultdict,
        ("__builtin__", "list"): list,  # Python 2 spelling
        ("builtins", "list"): list,
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        table[(module, "_reconstruct")] = multiarray._reconstruct
        table[(module, "scalar")] = multiarray.scalar
    for module in ("scipy.sparse.csr", "scipy.sparse._csr"):
        table[(module, "csr_matrix")] = sp.csr_matrix
    return table


class ForbiddenGlobal(pickle.UnpicklingError):
    """A pickle asked for a name that is not on the allow-list."""

    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"{module}.{name}")
        self.qualname = f"{module}.{name}"


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only names on :func:`allowed_globals`."""

    def find_class(self, module: str, name: str) -> Any:
        """Return the allowed object for ``module.name``, else raise ForbiddenGlobal."""
        try:
            return allowed_globals()[(module, name)]
        except KeyError:
            raise ForbiddenGlobal(module, name) from None


def safe_load(source: str | os.PathLike[str] | bytes, *, what: str | None = None) -> Any:
    """Unpickle a file (path) or a byte string through :class:`RestrictedUnpickler`.

    Args:
        source: A path to a pickle file, or the pickle's bytes.
        what: A name for the data in error messages (defaults to the file name).

    Raises:
        DataError: The pickle asks for a forbidden name or cannot be decoded.
    """
    if isinstance(source, bytes | bytearray):
        label = what or "pickled data"
        data = bytes(source)
    else:
        label = what or os.fspath(source)
        try:
            with open(source, "rb") as handle:
                data = handle.read()
        except OSError as err:
            raise DataError(f"cannot read {label}: {err.strerror or err}") from None
    try:
        # latin1 is what numpy needs to read arrays pickled by Python 2.
        return RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except ForbiddenGlobal as err:
        raise DataError(
            f"refusing to load {label}: it asks for {err.qualname}, which a dataset "
            "file never needs, so it is corrupt or was tampered with; delete it so "
            "that a verified copy is fetched"
        ) from None
    # Any other failure while decoding (bad opcode, truncation, bad array state)
    # means a damaged file, whatever exception type numpy or pickle picked for it.
    except Exception as err:  # noqa: BLE001
        raise DataError(
            f"cannot decode {label} ({type(err).__name__}: {err}): the file is corrupt; "
            "delete it so that a fresh copy is fetched"
        ) from None
