"""The README's two commands stay true: CI runs exactly its test command."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, flags=re.S)
    assert len(blocks) >= 2, "the README must show the main job and the test command as bash blocks"
    main_job, tests = blocks[0], blocks[1]
    assert "tl-glp demo" in main_job and "pip install torch==2.13.0" in main_job
    test_command = tests.split("&&")[-1].strip()
    assert test_command in (ROOT / ".ci" / "run").read_text()
