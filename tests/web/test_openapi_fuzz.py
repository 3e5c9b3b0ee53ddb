"""Property-based run over the served OpenAPI spec: no generated request gets a 5xx.

A server of its own (the generated requests create users, tokens, cases, feeds...),
over one hour of demo data, fuzzed by schemathesis with the first-start admin
token. Only `not_a_server_error` is checked: a 4xx for a generated bad input is
the right answer. A failure carries the server's log lines for that request.

Left out, because they would lock the fuzzer out or make the later cases
meaningless (every other operation runs):
- DELETE /api/v1/tokens/{token_id}: may revoke the very token the fuzzer uses.
- PATCH /api/v1/users/{name}: may disable the admin or demote it.
- PATCH /api/v1/me: wrong current passwords trip the login rate limit of 127.0.0.1.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.helpers import LightsocServer, cli, write_config
from tests.web.ui_server import subprocess_input

EXCLUDED = [
    ("DELETE", r"^/api/v1/tokens/"),
    ("PATCH", r"^/api/v1/users/"),
    ("PATCH", r"^/api/v1/me$"),
]
#: cases per operation (25 in all): valid inputs, then inputs that break the schema
EXAMPLES = {GenerationMode.POSITIVE: 15, GenerationMode.NEGATIVE: 10}
#: operations whose every answer is heavy: an export streams up to 100k rows (~1 s each)
FEWER_EXAMPLES = {"GET /api/v1/search/export": 4}
LATE_EXAMPLES = 3  # per mode, once TIME_BUDGET is spent: every operation still runs
TIME_BUDGET = 100.0  # seconds of fuzzing: the module stays under 3 minutes on 2 cores
REQUEST_TIMEOUT = 30.0


class FuzzTarget:
    """The server, its admin token and a session that sends it."""

    def __init__(self, server: LightsocServer) -> None:
        assert server.admin_token, server.output
        self.server = server
        self.url = server.url
        self.token = server.admin_token
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {self.token}"


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzTarget]:
    root = tmp_path_factory.mktemp("fuzz")
    data_dir = root / "data"
    res = cli("demo", "--hours", "1", "--no-serve", "--data-dir", data_dir, timeout=300)
    assert res.returncode == 0, res.stderr
    add = subprocess_input(
        ["user", "add", "fuzzadm", "--role", "admin", "--data-dir", str(data_dir)],
        "fuzz-admin-pass-0123",
    )
    assert add.returncode == 0, add.stderr
    config = write_config(root / "lightsoc.yml", {}, data_dir=data_dir)
    server = LightsocServer(["--config", config], cwd=root, data_dir=data_dir)
    try:
        server.start()
        target = FuzzTarget(server)
        yield target
        target.session.close()
    finally:
        server.ensure_stopped()


@pytest.fixture(scope="module")
def api_schema(fuzz_target: FuzzTarget) -> schemathesis.BaseSchema:
    """The spec as the server serves it (to the admin), minus the lock-out operations."""
    resp = httpx.get(
        f"{fuzz_target.url}/api/v1/openapi.json",
        headers={"Authorization": f"Bearer {fuzz_target.token}"},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    spec = resp.json()
    assert len(spec["paths"]) > 20, sorted(spec["paths"])
    schema: schemathesis.BaseSchema = schemathesis.openapi.from_dict(spec)
    for method, path_regex in EXCLUDED:
        schema = schema.exclude(method=method, path_regex=path_regex)
    return schema


def server_lines_since(server: LightsocServer, start: int) -> str:
    """The server's output after line `start` (a 5xx logs its traceback there)."""
    time.sleep(0.2)  # the reader thread may still be copying the traceback
    return "\n".join(server.lines[start:])[-8000:]


def test_fuzz_data_dir_has_events(fuzz_target: FuzzTarget) -> None:
    """The demo data is there, so searches and timelines run on real rows."""
    resp = fuzz_target.session.get(
        f"{fuzz_target.url}/api/v1/search", params={"q": "*", "since": "all", "limit": 1}
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["total"] > 100


def fuzz_operation(
    target: FuzzTarget,
    operation: schemathesis.APIOperation,
    mode: GenerationMode,
    examples: int,
    found: dict[str, str],
    statuses: Counter[int],
) -> None:
    """Run `examples` generated cases; the first 5xx's request and server log go to `found`."""
    key = f"{operation.label} ({mode.value})"

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,  # the same cases on every run, so CI is reproducible
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        start = len(target.server.lines)
        try:
            response = case.call_and_validate(
                base_url=target.url,
                session=target.session,
                checks=[not_a_server_error],
                timeout=REQUEST_TIMEOUT,
            )
            statuses[response.status_code] += 1
        except (Exception, BaseExceptionGroup) as exc:  # schemathesis raises a FailureGroup
            if key not in found:  # the first failure; shrinking repeats it many times
                found[key] = (
                    f"{exc}\n{case.as_curl_command()}\n"
                    f"server output:\n{server_lines_since(target.server, start)}"
                )
            raise

    try:
        run()
    except Unsatisfiable:
        # no input of this operation can be made invalid (no parameters, or only strings
        # in the path): the positive run covered it
        assert mode is GenerationMode.NEGATIVE, key
    except (Exception, BaseExceptionGroup) as exc:
        found.setdefault(key, repr(exc))


def test_no_server_error(fuzz_target: FuzzTarget, api_schema: schemathesis.BaseSchema) -> None:
    """Every operation, with valid and with invalid inputs: never a 5xx."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) > 40, [op.label for op in operations]
    found: dict[str, str] = {}
    statuses: Counter[int] = Counter()
    started = time.monotonic()
    for operation in operations:
        for mode, examples in EXAMPLES.items():
            examples = min(examples, FEWER_EXAMPLES.get(operation.label, examples))
            if time.monotonic() - started > TIME_BUDGET:
                examples = min(examples, LATE_EXAMPLES)
            fuzz_operation(fuzz_target, operation, mode, examples, found, statuses)
    assert not found, "\n\n".join(f"== {k}\n{v}" for k, v in found.items())
    # the token was taken (no 401) and generated requests got through to real answers
    assert statuses[401] == 0, statuses
    assert sum(n for code, n in statuses.items() if code < 300) > len(operations), statuses


def test_excluded_operations_exist(api_schema: schemathesis.BaseSchema) -> None:
    """The exclusions name real operations (a renamed path would silently fuzz nothing)."""
    spec = api_schema.raw_schema
    for method, path_regex in EXCLUDED:
        assert any(
            re.search(path_regex, path) and method.lower() in ops
            for path, ops in spec["paths"].items()
        ), (method, path_regex)
