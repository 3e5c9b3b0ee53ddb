"""lightsoc: a lightweight security operations platform."""

__version__ = "0.1.0"
