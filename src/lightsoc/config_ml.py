"""`detect.ml`: the models scored in the stream and the window jobs on a schedule."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from pydantic import Field

from lightsoc.config_base import ConfigModel as _Model
from lightsoc.timeutil import Duration

MLStreamKind = Literal["web", "dga"]


class MLJobConfig(_Model):
    """A window model run by the scheduler: every `interval` over the last `lookback`."""

    enabled: bool = True
    interval: Duration = timedelta(hours=1)
    lookback: Duration = timedelta(hours=24)
    #: alert at or above this score (None: the model's default)
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)


class TunnelJobConfig(MLJobConfig):
    interval: Duration = timedelta(minutes=10)
    lookback: Duration = timedelta(hours=1)


class LdaJobConfig(MLJobConfig):
    interval: Duration = timedelta(hours=24)
    #: how many of the lowest-scored records an LDA run reports
    top: int = Field(default=50, ge=1, le=100_000)


class MLJobsConfig(_Model):
    """RITA beaconing (hourly over a day), DNS tunnelling, LDA suspicious connects (daily)."""

    beacon: MLJobConfig = Field(default_factory=MLJobConfig)
    tunnel: TunnelJobConfig = Field(default_factory=TunnelJobConfig)
    lda: LdaJobConfig = Field(default_factory=LdaJobConfig)


class RetrainConfig(_Model):
    """A stream model retrained on a schedule (see `detect.ml.retrain`):
    every `interval` from the stored data of the last `lookback` plus the shipped public
    training data; kept only if its held-out figures are at most `margin` below the
    current model's on the same split."""

    enabled: bool = False
    interval: Duration = timedelta(days=7)
    lookback: Duration = timedelta(days=30)
    #: fewer stored training rows than this: the current model is kept (the run is logged)
    min_events: int = Field(default=500, ge=1, le=100_000_000)
    #: how much worse (AUC, F1) than the current model a new one may be on held-out data
    margin: float = Field(default=0.02, ge=0.0, le=1.0)
    #: rows of the shipped public training data mixed in (None: all of it)
    public_sample: int | None = Field(default=40_000, ge=100, le=10_000_000)


class DgaRetrainConfig(RetrainConfig):
    min_events: int = Field(default=20, ge=1, le=100_000_000)
    margin: float = Field(default=0.01, ge=0.0, le=1.0)
    public_sample: int | None = Field(default=None, ge=100, le=10_000_000)


class MLRetrainConfig(_Model):
    """Scheduled retraining of the web request classifier and the DGA model (off by default)."""

    web: RetrainConfig = Field(default_factory=RetrainConfig)
    dga: DgaRetrainConfig = Field(default_factory=DgaRetrainConfig)


class MLConfig(_Model):
    """`stream`: per-event models scored on every batch (`[]` turns them off);
    `thresholds`: per-model alert thresholds overriding the trained ones;
    `jobs`: window models (beaconing, DNS tunnelling, LDA suspicious connects);
    `retrain`: the stream models retrained on a schedule from the stored data;
    `feedback_duplication`: how many times an analyst's "benign" rating repeats
    its record in the next LDA training (Apache Spot used 1000).
    """

    stream: list[MLStreamKind] = ["web", "dga"]
    thresholds: dict[MLStreamKind, Annotated[float, Field(ge=0.0, le=1.0)]] = {}
    jobs: MLJobsConfig = Field(default_factory=MLJobsConfig)
    feedback_duplication: int = Field(default=1000, ge=1, le=100_000)
    retrain: MLRetrainConfig = Field(default_factory=MLRetrainConfig)
