"""lightsoc: a lightweight security operations platform."""

import os

__version__ = "0.1.0"

# polars' jemalloc keeps freed pages for 10 s and one arena per thread by
# default; a collector that shares the box with what it watches should hand
# memory back. Set before polars loads; the user's own setting wins.
os.environ.setdefault("_RJEM_MALLOC_CONF", "narenas:1,dirty_decay_ms:500,muzzy_decay_ms:0")
