"""docs/pipeline.schema.json, generated from the client's pipeline definition.

.venv/bin/python tools/docs/pipeline_schema.py            # rewrite it
.venv/bin/python tools/docs/pipeline_schema.py --check    # exit 1 if it is stale
"""

from __future__ import annotations

import sys
from pathlib import Path

from buildcontrol_client.pipeline_schema import render

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "docs" / "pipeline.schema.json"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not SCHEMA_FILE.exists() or SCHEMA_FILE.read_text() != text:
            print(f"{SCHEMA_FILE} is stale: run `make docs`", file=sys.stderr)
            return 1
        return 0
    SCHEMA_FILE.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
