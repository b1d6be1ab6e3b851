"""The README's walkthrough works as written: its shell blocks, run in order in a fresh directory.

Every ``sh`` block under "Using it" is run in one bash session (``set -e``: a command that
fails stops the run) with the test's environment's ``clearing`` first on ``PATH`` in place
of ``source .venv/bin/activate``, and nothing of this checkout reachable from the
directory. The results the walkthrough promises are then checked in its output.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def walkthrough() -> list[str]:
    """The ``sh`` blocks of the README's "Using it" section, in order."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Using it", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)


def test_the_walkthrough_has_blocks_and_needs_nothing_outside_its_directory():
    blocks = walkthrough()
    assert len(blocks) == 3
    assert all("../shared" not in block for block in blocks)
    assert sum(block.count("--at ") for block in blocks) >= 10  # writes are dated explicitly


def test_every_block_of_the_walkthrough_runs_in_a_fresh_directory(tmp_path):
    script = "\n".join(line for block in walkthrough() for line in block.splitlines()
                       if not line.startswith("source "))
    env = {key: value for key, value in os.environ.items() if not key.startswith("CLEARING_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    result = subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "called alice; liquidated alice" in out  # the crash, named in its result line
    assert "paused: liquidations in all markets" in out
    assert "pending: set_parameters liquidation_fee_rate=0.02 in the clearinghouse" in out
    assert "verified" in out.splitlines()
    assert (tmp_path / "daily-margin.csv").read_text().startswith("account,")
    assert (tmp_path / "past.db").is_file() and (tmp_path / "copy.db").is_file()
    assert re.search(r"store walkthrough\.db: schema \d+", out)
    assert "account alice" in out and "error:" not in result.stderr
