"""Loading data files that come in pickle formats, without running code from them.

CIFAR's python batches are pickles and CIFAR-N's label file is a ``torch.save`` pickle; an
ordinary unpickler calls whatever a crafted file names (``os.system``, ``eval``, …) on
every node that loads it. Both readers here accept only what the formats hold — dicts,
lists, bytes, strings, numbers and numpy arrays (rebuilt by numpy's own
``_reconstruct``) — and refuse any other global with a :class:`DataError` naming the file
and the global, before anything is called.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from coretune.errors import DataError

#: the globals a pickled numpy array needs (numpy 1 and numpy 2 names), and bytes
ALLOWED_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    # how protocol-2 pickles written by Python 3 rebuild bytes (torch's restricted
    # unpickler allows it too): a codec lookup, no import outside ``encodings``
    ("_codecs", "encode"),
})


class ArrayUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED_GLOBALS` (builtin containers and
    scalars need no global)."""

    def __init__(self, file: io.BufferedIOBase, path: Path, **kwargs: Any):
        super().__init__(file, **kwargs)
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise DataError(f"{self.path}: refused to load {module}.{name} (a data file may hold "
                        "only dicts, lists, bytes, numbers and numpy arrays)")


def load_array_pickle(path: Path, encoding: str = "bytes") -> Any:
    """Unpickle ``path`` (CIFAR's python batches: ``encoding="bytes"`` for their Python 2
    strings) through :class:`ArrayUnpickler`."""
    with open(path, "rb") as fh:
        try:
            return ArrayUnpickler(fh, path, encoding=encoding).load()
        except DataError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
            raise DataError(f"{path}: not a readable pickle of arrays ({err})") from None


def load_torch_arrays(path: Path) -> Any:
    """``torch.load`` of ``path`` with ``weights_only=True``: tensors, containers and numpy
    arrays only (torch's restricted unpickler, with numpy's array globals allowed)."""
    import torch

    # numpy arrays: the rebuild function, ndarray, dtype and the dtype classes of numbers
    # (``numpy.dtypes.Int64DType`` …), which build nothing but a dtype
    dtype_classes = [type(np.dtype(t)) for t in (*np.sctypeDict.values(), np.bool_)
                     if np.dtype(t).kind in "biufc"]
    allowed = [np.ndarray, np.dtype, _numpy_reconstruct(), *set(dtype_classes)]
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"{path}: refused to load it ({first})") from None


def _numpy_reconstruct() -> Any:
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy 1
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


__all__ = ["ArrayUnpickler", "ALLOWED_GLOBALS", "load_array_pickle", "load_torch_arrays"]
