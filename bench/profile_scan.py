"""Profile of one warm in-process scan of 10,000 tags (pyinstrument), for the report.

``python -m bench.profile_scan`` prints pyinstrument's text tree of 30 warm scans
against the real registry (started in its own process). pyinstrument is not a project
dependency: ``make bench`` installs it into the venv; without it ``profile`` returns None
and the report says the profile was not taken.

Invariant: the registry process is stopped when the profile ends.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from pathlib import Path
from typing import Any

from bench.common import service
from bench.scan_bench import TAGS, CountingObserver, _ours, _ours_client


async def _profiled(host: str, runs: int) -> str:
    pyinstrument: Any = importlib.import_module("pyinstrument")
    client = _ours_client(CountingObserver())
    try:
        await _ours(client, f"{host}/big", None)
        profiler = pyinstrument.Profiler(interval=0.0005)
        profiler.start()
        for _ in range(runs):
            await _ours(client, f"{host}/big", None)
        profiler.stop()
        text: str = profiler.output_text(unicode=False, color=False)
        return text
    finally:
        await client.close()


def profile(tmp: Path, runs: int = 30) -> str | None:
    """The profile text, or None when pyinstrument is not installed."""
    try:
        importlib.import_module("pyinstrument")
    except ImportError:
        return None
    spec = json.dumps([{"name": "big", "tags": TAGS}])
    tmp.mkdir(parents=True, exist_ok=True)
    with service(["registry", "--tmp", str(tmp), "--spec", spec], tmp / "profile.log") as info:
        return asyncio.run(_profiled(info["registry"], runs))


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as work:
        out = profile(Path(work))
    sys.stdout.write(out or "pyinstrument is not installed\n")
