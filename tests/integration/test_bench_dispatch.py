"""bench/dispatch.py still runs end to end (tiny sizes), so the benchmark cannot rot unnoticed.

It needs the same services as the other integration tests (Postgres, Redis, the `weed` binary)
and starts its own database, S3 server and workers. Speed is never asserted: on a shared 2-core
CI machine a timing assertion would only measure the neighbours.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

BENCH = Path(__file__).resolve().parents[2] / "bench" / "dispatch.py"


def test_dispatch_bench_completes_and_prints_its_figures(postgres_admin_url, redis_url):
    # The fixtures only prove the services are up; the script finds them the same way.
    result = subprocess.run([sys.executable, str(BENCH), "--renders", "20", "--singles", "3"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    out = result.stdout
    assert "one job of 20 renders on 2 workers" in out
    figures = re.search(r"^RESULT renders_per_s=([\d.]+) farm_overhead_ms=([\d.]+) "
                        r"celery_round_trip_ms=([\d.]+) ratio=([\d.]+) "
                        r"per_render_ms=([\d.]+) per_render_ratio=([\d.]+)$", out, re.MULTILINE)
    assert figures, out
    assert all(float(value) > 0 for value in figures.groups())
    # Every render succeeded, spread over the two workers' names.
    per_worker = re.search(r"renders per worker\s+(\{.*\})", out).group(1)
    assert sum(int(n) for n in re.findall(r": (\d+)", per_worker)) == 20
