"""`pipeline.batch_max_ms` reaches the streaming sources (how long a partial batch waits)."""

from __future__ import annotations

from pathlib import Path

from lightsoc.config import load_config
from lightsoc.runtime import build_sources, open_stores
from tests.helpers import free_port


def test_batch_max_ms_sets_each_sources_flush_time(tmp_path: Path) -> None:
    cfg = tmp_path / "lightsoc.yml"
    cfg.write_text(
        f"data_dir: {tmp_path / 'data'}\n"
        "sources:\n"
        f"  net: {{type: syslog, listen: ['tcp://127.0.0.1:{free_port()}']}}\n"
        f"  flows: {{type: netflow, listen: ['udp://127.0.0.1:{free_port()}']}}\n"
        "pipeline: {batch_max_ms: 50}\n"
    )
    config = load_config(cfg)
    stores = open_stores(config.data_dir, config)
    try:
        sources = build_sources(config, stores)
        assert {s.id: s.flush_seconds for s in sources} == {"net": 0.05, "flows": 0.05}
    finally:
        stores.close()
    assert load_config(None).pipeline.batch_max_ms == 200  # the default: 0.2 s
