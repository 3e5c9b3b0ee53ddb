"""Keep pyarrow from importing pandas in a lightsoc process.

pyarrow's pandas shim imports pandas (when installed: chdb pulls it in) the
first time any array meets `to_numpy()`, `pa.table()` or `empty_table()`:
~0.4 s of every command's start, for nothing, since lightsoc hands pyarrow no
pandas objects. Letting the shim's one import attempt fail makes it remember
"no pandas"; an explicit `to_pandas()` still imports it.
"""

from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType


class _NoPandas(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname == "pandas" or fullname.startswith("pandas."):
            raise ImportError("lightsoc: pandas is not for pyarrow's implicit conversions")
        return None


def keep_pandas_out() -> None:
    """Let pyarrow's shim look for pandas once, now, and not find it."""
    if "pandas" in sys.modules:  # imported on purpose already: nothing to save
        return
    import pyarrow as pa

    blocker = _NoPandas()
    sys.meta_path.insert(0, blocker)
    try:
        pa.array([0]).to_numpy()
    except ImportError:  # a pyarrow that asks with raise_=True: it asks again later
        pass
    finally:
        sys.meta_path.remove(blocker)
