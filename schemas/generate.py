"""Write schemas/flow.schema.json, the flow schema editors load, from the step kinds and input checks.

    python schemas/generate.py          # from the repository's root, after adding or changing a kind or check

`flows validate` builds the same schema in memory (engine.flow_schema.build_schema); the test suite fails
when this file is out of date.
"""
from __future__ import annotations

import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from engine.flow_schema import build_schema  # noqa: E402

SCHEMA_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "flow.schema.json")


def main() -> None:
    with open(SCHEMA_FILE, "w", encoding="utf-8") as f:
        f.write(json.dumps(build_schema(), indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {SCHEMA_FILE}")


if __name__ == "__main__":
    main()
