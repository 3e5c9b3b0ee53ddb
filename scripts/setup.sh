#!/usr/bin/env bash
# Installs what lightsoc and its tests need: Debian packages (when root and
# missing) and the Python virtual environment. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

# Debian packages the test suite drives for real (a command each). Extend as tests grow.
APT_PACKAGES=()
declare -A NEEDED=(
    [nfdump]=nfdump [nfcapd]=nfdump [logger]=bsdutils [softflowd]=softflowd
    [tshark]=tshark [tcpdump]=tcpdump [dnsmasq]=dnsmasq-base [dig]=bind9-dnsutils
    [redis-server]=redis-server [kcat]=kcat [rsyslogd]=rsyslog [nginx]=nginx-light
    [clickhouse-server]=clickhouse-server [systemd-analyze]=systemd
    [chromium]=chromium
)
for cmd in "${!NEEDED[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || APT_PACKAGES+=("${NEEDED[$cmd]}")
done
# The UI tests' Chromium needs a CJK font to render (and screenshot) the zh-CN interface.
if [ ! -d /usr/share/fonts/opentype/noto ] || ! ls /usr/share/fonts/opentype/noto/NotoSansCJK* >/dev/null 2>&1; then
    APT_PACKAGES+=(fonts-noto-cjk)
fi
# The state-store tests run on a throwaway PostgreSQL cluster (tests/pg.py); its
# binaries live in /usr/lib/postgresql/<version>/bin, not on PATH.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    APT_PACKAGES+=(postgresql)
fi
# DGA training (`make eval`, scripts/train_models.py) counts English words as benign text.
if [ ! -f /usr/share/dict/american-english ]; then
    APT_PACKAGES+=(wamerican)
fi
# Debian's python3 needs python3-venv for `-m venv`; a pyenv/python.org build has it.
if ! "$PYTHON" -c "import ensurepip, venv" 2>/dev/null; then
    APT_PACKAGES+=(python3-venv)
fi
if [ ${#APT_PACKAGES[@]} -gt 0 ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    missing=()
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "setup: installing Debian packages: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
fi

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -U pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
# An editable install leaves lightsoc's own modules uncompiled (pip compiles only
# what it copies); with PYTHONDONTWRITEBYTECODE set, every command would compile
# ~100 modules again (~0.25 s of each start).
.venv/bin/python -m compileall -q src
echo "setup: environment ready in .venv"
