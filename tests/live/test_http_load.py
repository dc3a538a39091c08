"""Many concurrent requests against one real API process with a small pool: every
request gets an answer, none a 500, the refused ones a JSON 503 with Retry-After.

Figures (latency percentiles) are the benchmark's business (``python -m
app.bench.load``); this test asserts only what does not depend on the machine."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from app.bench.load import api_process, buyer_token, fire

CONCURRENT = 200
CLIENT_TIMEOUT_S = 60.0  # generous: a hang is a request with no answer at all


@pytest.mark.slow
def test_a_small_pool_under_a_burst_answers_every_request(
    live_database_url: str, tmp_path: Path
) -> None:
    env = {"CAPSHARE_DB_POOL_SIZE": "5", "CAPSHARE_DB_POOL_OVERFLOW": "0",
           "CAPSHARE_DB_POOL_TIMEOUT_S": "2", "CAPSHARE_REQUEST_TIMEOUT_S": "10"}  # fmt: skip
    with api_process(live_database_url, env=env, log=tmp_path / "server.log") as base_url:
        token = buyer_token(base_url)
        result = fire(base_url, "/api/v1/bookings?limit=5", n=CONCURRENT, token=token,
                      timeout_s=CLIENT_TIMEOUT_S)  # fmt: skip
        print(f"\n{result.summary()}")
        assert [o for o in result.outcomes if o.status is None] == [], "no answer in time"
        assert set(result.statuses) <= {200, 503}, result.statuses
        assert result.statuses[200] > 0
        assert all(o.retry_after == "1" for o in result.outcomes if o.status == 503)
        # the process is still healthy and serves the next request
        with httpx.Client(base_url=base_url, timeout=CLIENT_TIMEOUT_S) as http:
            assert http.get("/api/v1/health").status_code == 200
            r = http.get("/api/v1/bookings?limit=5", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200, r.text
    log = (tmp_path / "server.log").read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]
