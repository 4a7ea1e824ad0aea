"""Load the Planetoid pickles without letting a pickle run code or corrupt memory.

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
emits for any numpy scalar (e.g. a shape stored as ``numpy.int64``).

Names alone are not enough: numpy trusts the *state* a pickle hands a dtype or an
array. A dtype state can set the flags that say "this type holds Python objects",
after which the array's raw bytes are used as object pointers (fuzzing found the
crash). So the unpickler also checks how the names are used, in the form numpy and
scipy write them and no other: dtypes are plain numbers (bool, int, float, complex)
with the exact state numpy writes, always fresh copies (never numpy's shared ones);
arrays are built empty by ``_reconstruct`` and filled from raw bytes of exactly their
size; a CSR matrix is created bare (``NEWOBJ``) and gets a dict of attributes; the
defaultdict's factory is ``list``. Everything else (calling ``ndarray`` or
``csr_matrix`` directly, other states, the ``INST``/``OBJ`` opcodes) is refused like
a forbidden name. This needs the pure-Python unpickler (its opcodes can be
overridden); the files are small.
"""

from __future__ import annotations

import io
import math
import os
import pickle
from collections.abc import Callable
from functools import cache
from typing import Any

from zoo.errors import DataError

@cache
def allowed_globals() -> dict[tuple[str, str], Any]:
    """Return the allow-list: ``(module, name)`` as written in a pickle -> object."""
    import scipy.sparse as sp

    table: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): _ndarray_type(),
        ("numpy", "dtype"): _plain_dtype,
        ("collections", "defaultdict"): _adjacency,
        ("__builtin__", "list"): list,  # Python 2 spelling
        ("builtins", "list"): list,
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        table[(module, "_reconstruct")] = _empty_array
        table[(module, "scalar")] = _plain_scalar
    for module in ("scipy.sparse.csr", "scipy.sparse._csr"):
        table[(module, "csr_matrix")] = sp.csr_matrix
    return table


class ForbiddenGlobal(pickle.UnpicklingError):
    """A pickle asked for a name that is not on the allow-list, or used an allowed
    one in a way a dataset file never does (``qualname`` says which)."""

    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"{module}.{name}")
        # Shown in the error: the file's own text, so on one line and short.
        self.qualname = " ".join(f"{module}.{name}".split())[:80]


def _refuse(what: str) -> ForbiddenGlobal:
    module, _, name = what.rpartition(".")
    return ForbiddenGlobal(module, name)


# -- what the allowed names do -----------------------------------------------------
def _ndarray_type() -> type:
    import numpy as np

    return np.ndarray


def _multiarray() -> Any:
    # numpy 2 keeps it in _core; numpy 1 in core (the module pickles name either way).
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray  # type: ignore[no-redef]
    return multiarray


def _is_plain(dtype: Any) -> bool:
    import numpy as np

    return (isinstance(dtype, np.dtype) and dtype.kind in "biufc" and dtype.fields is None
            and dtype.subdtype is None and not dtype.hasobject and dtype.flags == 0)


def _plain_dtype(spec: Any, align: Any = False, copy: Any = True) -> Any:
    """``numpy.dtype``, for a number type only, and always a fresh copy: the BUILD that
    follows sets its state, which must never reach numpy's shared dtypes."""
    import numpy as np

    if not isinstance(spec, str) or len(spec) > 8:
        raise _refuse("numpy.dtype(not a type code)")
    try:
        dtype = np.dtype(spec, bool(align), True)
    except TypeError:
        raise _refuse("numpy.dtype(an unknown type code)") from None
    if not _is_plain(dtype):
        raise _refuse(f"numpy.dtype({dtype.kind!r}: not a number type)")
    return dtype


def _empty_array(subtype: Any, shape: Any, typecode: Any) -> Any:
    """``multiarray._reconstruct`` as numpy writes it: an empty ndarray to be filled."""
    if subtype is not _ndarray_type() or shape != (0,) or typecode not in ("b", b"b"):
        raise _refuse("numpy._reconstruct(other than an empty ndarray)")
    return _multiarray()._reconstruct(subtype, (0,), b"b")


def _plain_scalar(dtype: Any, data: Any = None) -> Any:
    """``multiarray.scalar``: a number from exactly its bytes."""
    if not _is_plain(dtype) or not isinstance(data, (bytes, str)) or len(data) != (
            dtype.itemsize):
        raise _refuse("numpy.scalar(other than a number from its bytes)")
    return _multiarray().scalar(dtype, data)


def _adjacency(factory: Any = None) -> Any:
    """``collections.defaultdict(list)``, the Planetoid adjacency."""
    import collections

    if factory is not list:
        raise _refuse("collections.defaultdict(with a factory other than list)")
    return collections.defaultdict(list)


_CONSTRUCTORS: tuple[Callable[..., Any], ...] = (_plain_dtype, _empty_array, _plain_scalar,
                                                 _adjacency)


def _check_build(inst: Any, state: Any) -> None:
    """BUILD sets ``inst``'s state: only the states numpy and scipy write are allowed."""
    import numpy as np
    import scipy.sparse as sp

    if isinstance(inst, np.dtype):
        # (version, byte order, subarray, names, fields, item size, alignment, flags)
        # exactly as numpy writes them for a plain number type.
        plain = (isinstance(state, tuple) and len(state) == 8 and state[0] == 3
                 and state[1] in ("<", ">", "|", "=") and state[2:5] == (None, None, None)
                 and state[5:] == (-1, -1, 0))
        if not plain:
            raise _refuse("numpy.dtype.__setstate__(other than a number type's)")
    elif isinstance(inst, np.ndarray):
        if not (isinstance(state, tuple) and len(state) == 5 and state[0] == 1
                and isinstance(state[1], tuple) and _is_plain(state[2])
                and all(isinstance(d, int) and d >= 0 for d in state[1])
                and isinstance(state[3], bool) and isinstance(state[4], (bytes, str))
                and len(state[4]) == math.prod(state[1]) * state[2].itemsize):
            raise _refuse("numpy.ndarray.__setstate__(other than numbers from their bytes)")
    elif not (type(inst) is sp.csr_matrix and isinstance(state, dict)
              and all(isinstance(k, str) for k in state)):
        raise _refuse(f"{type(inst).__name__}.__setstate__")


class RestrictedUnpickler(pickle._Unpickler):  # type: ignore[name-defined]
    """An unpickler that resolves only names on :func:`allowed_globals` and lets them
    build only what numpy and scipy write (see the module docstring)."""

    dispatch = dict(pickle._Unpickler.dispatch)  # type: ignore[attr-defined]

    def find_class(self, module: str, name: str) -> Any:
        """Return the allowed object for ``module.name``, else raise ForbiddenGlobal."""
        try:
            return allowed_globals()[(module, name)]
        except KeyError:
            raise ForbiddenGlobal(module, name) from None

    def load_reduce(self) -> None:
        if not any(self.stack[-2] is c for c in _CONSTRUCTORS):
            raise _refuse(f"{getattr(self.stack[-2], '__name__', 'an object')}(...) call")
        super().load_reduce()

    def load_newobj(self) -> None:
        self._check_new(self.stack[-2], self.stack[-1])
        super().load_newobj()

    def load_newobj_ex(self) -> None:
        self._check_new(self.stack[-3], self.stack[-2] or self.stack[-1])
        super().load_newobj_ex()

    def load_build(self) -> None:
        _check_build(self.stack[-2], self.stack[-1])
        super().load_build()

    def _instantiate(self, klass: Any, args: Any) -> None:  # the INST and OBJ opcodes
        raise _refuse(f"{getattr(klass, '__name__', 'an object')}(...) by INST/OBJ")

    @staticmethod
    def _check_new(cls: Any, args: Any) -> None:
        import scipy.sparse as sp

        if cls is not sp.csr_matrix or args:
            raise _refuse(f"{getattr(cls, '__name__', 'an object')}.__new__")

    dispatch[pickle.REDUCE[0]] = load_reduce
    dispatch[pickle.NEWOBJ[0]] = load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex
    dispatch[pickle.BUILD[0]] = load_build


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
        problem = " ".join(str(err).split())[:80]  # one line, short: the file is a stranger's
        raise DataError(
            f"cannot decode {label} ({type(err).__name__}: {problem}): the file is corrupt; "
            "delete it so that a fresh copy is fetched"
        ) from None
