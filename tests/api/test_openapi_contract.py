"""The API against its own OpenAPI document: generated requests to every operation (schemathesis, a bounded number
of examples each) get no server error and no status code the document does not list; plus the document's own
promises (a security scheme, problem responses)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import status_code_conformance  # noqa: E402

from tests.conftest import make_settings  # noqa: E402

EXAMPLES = int(os.environ.get("REELFORGE_CONTRACT_EXAMPLES", "10"))


def not_a_server_error_unless_unconfigured(ctx: Any, response: Any, case: Any) -> bool | None:
    """Schemathesis's `not_a_server_error`, except for a deliberate 503 whose code ends in `_not_configured`: a route
    of an external service this server has no settings for (docs/decisions.md) works; it is not a server error."""
    if response.status_code == 503:
        try:
            code = str(response.json().get("code", ""))
        except (ValueError, AttributeError):
            code = ""
        if code.endswith("_not_configured"):
            return None
    return not_a_server_error(ctx, response, case)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, dict[str, str], dict[str, str]]]:
    from fastapi.testclient import TestClient

    from reelforge.api.app import create_app
    from reelforge.container import Container
    from reelforge.domain.types import Role

    tmp: Path = tmp_path_factory.mktemp("contract")
    c = Container(make_settings(tmp, f"sqlite:///{tmp / 'contract.db'}"))
    c.migrate()
    app = create_app(container=c)
    with TestClient(app):
        c.auth.register("user@example.com", "contract password 123")
        user = c.auth.login("user@example.com", "contract password 123").access_token
        c.auth.register("admin@example.com", "contract password 123", role=Role.admin)
        admin_token = c.auth.login("admin@example.com", "contract password 123").access_token
        yield app, {"Authorization": f"Bearer {user}"}, {"Authorization": f"Bearer {admin_token}"}
    c.close()


@pytest.fixture(scope="module")
def api_schema(served: tuple[Any, dict[str, str], dict[str, str]]) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", served[0])


def test_no_server_error_and_no_undocumented_status(api_schema: Any,
                                                    served: tuple[Any, dict[str, str], dict[str, str]]) -> None:
    """Every operation, `EXAMPLES` generated requests each, signed in as a normal user where the operation asks
    for credentials (admin operations then answer 403, which they document), and the admin operations once more
    as an admin."""
    from hypothesis import given

    _, user, admin = served
    failures: list[str] = []
    operations = 0
    for result in api_schema.get_all_operations():
        operation = result.ok()
        operations += 1
        secured = bool(operation.definition.raw.get("security"))
        as_whom = [user, admin] if secured and "/admin" in operation.path else [user]

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case: Any) -> None:
            for who in as_whom:  # noqa: B023 (check runs within this iteration)
                headers = {**(case.headers or {}), **who} if secured else case.headers  # noqa: B023
                case.call_and_validate(headers=headers, checks=[not_a_server_error_unless_unconfigured,
                                                                  status_code_conformance])

        try:
            check()
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # collect them all: one run shows every operation that breaks its contract
            lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
            failures.append(f"{operation.method.upper()} {operation.path}: " + " | ".join(lines[:8]))
    assert operations > 40
    if failures and os.environ.get("REELFORGE_CONTRACT_REPORT"):
        Path(os.environ["REELFORGE_CONTRACT_REPORT"]).write_text("\n".join(failures))
    assert failures == [], "\n".join(failures)


def test_the_document_names_its_security_and_problems(api_schema: Any,
                                                      served: tuple[Any, dict[str, str], dict[str, str]]) -> None:
    doc = served[0].openapi()
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    job_read = doc["paths"]["/v1/jobs/{job_id}"]["get"]
    assert job_read["security"] == [{"bearer": []}]
    assert {"400", "401", "403", "404", "422"} <= set(job_read["responses"])
    assert doc["paths"]["/v1/jobs"]["post"]["responses"].keys() >= {"413", "422", "429"}
    assert doc["paths"]["/v1/auth/token"]["post"]["security"] == []
    problem = job_read["responses"]["404"]["content"]["application/problem+json"]["schema"]
    assert problem == {"$ref": "#/components/schemas/Problem"}
