# lightsoc in one container: `docker run` = `lightsoc run --role all` (embedded
# DuckDB + SQLite under /var/lib/lightsoc). For a split deployment, run the same
# image once per role with a shared config, e.g.
#   docker run -v /etc/lightsoc:/etc/lightsoc:ro --env-file /etc/lightsoc/lightsoc.env \
#     IMAGE run --role process --config /etc/lightsoc/lightsoc.yml --data-dir /var/lib/lightsoc
# (deploy/README.md). Mount your own /etc/lightsoc/lightsoc.yml to replace the default.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# The package (src/lightsoc/rules is a link to ../../rules: both are copied).
WORKDIR /build
COPY pyproject.toml README.md ./
COPY rules ./rules
COPY src ./src
RUN pip install . && rm -rf /build

# Non-root; the data directory is a volume owned by that user. The default
# config (used when no --config is given: ./lightsoc.yml in the working
# directory) keeps data in the volume and serves the web UI on all interfaces
# of the container, where EXPOSE publishes it.
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/lightsoc \
        --no-create-home --shell /usr/sbin/nologin lightsoc \
    && mkdir -p /var/lib/lightsoc /etc/lightsoc \
    && chown lightsoc:lightsoc /var/lib/lightsoc \
    && printf '%s\n' \
        '# container default; mount your own /etc/lightsoc/lightsoc.yml' \
        'data_dir: /var/lib/lightsoc' \
        'web: {listen: "0.0.0.0:8000"}' \
        > /etc/lightsoc/lightsoc.yml

USER lightsoc
WORKDIR /etc/lightsoc
VOLUME ["/var/lib/lightsoc"]
EXPOSE 8000
# `docker stop` sends SIGTERM: lightsoc drains and commits; give it time
# (`docker stop -t 120`, or `stop_grace_period: 2m` in compose)
STOPSIGNAL SIGTERM

ENTRYPOINT ["lightsoc"]
CMD ["run", "--role", "all"]
