"""Bus URLs are printed without their secrets."""

from __future__ import annotations

import pytest

from lightsoc.roles import _safe_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://h:6379/0", "redis://h:6379/0"),
        ("redis://:s3cret@h:6379/0?stream=s", "redis://***@h:6379/0?stream=s"),
        (
            "kafka://a:9093,b:9093?topic=t&sasl.password=s3cret&security.protocol=SASL_SSL",
            "kafka://a:9093,b:9093?topic=t&sasl.password=***&security.protocol=SASL_SSL",
        ),
        ("kafka://a:9093?ssl.key.password=s3cret", "kafka://a:9093?ssl.key.password=***"),
    ],
)
def test_secrets_are_masked(url: str, shown: str) -> None:
    assert _safe_url(url) == shown
    assert "s3cret" not in _safe_url(url)
