"""Behind a reverse proxy named in ``trusted_proxies``, a request is seen from the address its
X-Forwarded-For names: in the audit log, source-address conditions and sign-in limits. (Without
the setting it is ignored from everyone: tests/access/test_review_gaps.py.) The proxy here is
loopback, this test's own client, which the server warns about: any local process could then
choose its address."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.services import start_cumulo


def test_a_trusted_proxy_names_the_callers_address(tmp_path: Path) -> None:
    server = start_cumulo(tmp_path / ".cumulo", {"CUMULO_TRUSTED_PROXIES": "127.0.0.1"})
    try:
        admin = server.client()
        admin.users.create("behind-proxy", kind="service", role="viewer")
        token = admin.tokens.create("t", user="behind-proxy")["token"]
        refused = httpx.delete(f"{server.url}/api/v1/files/buckets/nope", timeout=30,
                               headers={"Authorization": f"Bearer {token}",
                                        "X-Forwarded-For": "203.0.113.7, 127.0.0.1"})
        assert refused.status_code == 403
        deadline = time.monotonic() + 10
        entries: list[dict[str, object]] = []
        while not entries and time.monotonic() < deadline:
            entries = admin.audit.list(user="behind-proxy", outcome="denied")["events"]
            time.sleep(0.1)
        assert [e["source"] for e in entries] == ["203.0.113.7"]
        assert any("trusted_proxies includes a loopback address" in line
                   for line in server.log_lines())
    finally:
        server.stop()
