"""`flows validate` on a generated flow of 1,000 steps. Goal: < 1 s.

    python bench/validate.py [--steps 1000] [--runs 7]

The flow mixes every step kind the way real flows do: questions with checks, buttons and option lists,
actions with templated parameters and outcome routes, branches on conditions, messages and ends, each
with its own templates (so no cache makes later steps free). Timed two ways: in-process through the
click command (template caches cleared before each run), and as a fresh `flows validate` subprocess
(interpreter start, imports and all). Prints every run, then the median and the spread (min-max).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from click.testing import CliRunner  # noqa: E402

import cli  # noqa: E402
from benchkit import report, timed  # noqa: E402
from engine.template_check import inspect_expression, inspect_template  # noqa: E402


def generate(steps: int) -> str:
    """A valid flow of `steps` steps (rounded to a multiple of 10), every step reachable."""
    lines = [
        "# yaml-language-server: $schema=../schemas/flow.schema.json",
        "flow: bench_big",
        "title: A very long generated flow",
        "triggers: [bench big]",
        "cancel: {words: [cancel, stop], say: 'Cancelled, {{ contact }}.'}",
        "expire: {after: 30m, say: Timed out.}",
        "steps:",
    ]
    blocks = steps // 10
    for b in range(blocks):
        nxt = f"greet_{b + 1}" if b + 1 < blocks else "bye"
        lines += f"""\
  greet_{b}:
    say: "Part {b}: hello {{{{ contact }}}}, your last answer was {{{{ name_{b - 1 if b else 0} | default('none') }}}}."
    next: ask_name_{b}
  ask_name_{b}:
    ask: "Part {b}: what is your name?"
    expect: {{text: {{max_length: 60}}}}
    retry: "Please send your name in at most 60 characters (part {b})."
    save: name_{b}
    next: ask_amount_{b}
  ask_amount_{b}:
    ask: "{{{{ name_{b} }}}}, how much for part {b}? At most {{{{ limit_{b}.value | money }}}}."
    expect: {{amount: {{min: "0.01", max: "{{{{ limit_{b}.value }}}}"}}}}
    attempts: 3
    on_fail: end_{b}
    save: amount_{b}
    next: limit_{b}
  limit_{b}:
    action: core.set
    with: {{value: {{value: "{{{{ amount_{b} | float * 2 }}}}", part: "{b}"}}}}
    save: limit_{b}
    on: {{ok: pick_{b}}}
  pick_{b}:
    ask: "Pay {{{{ amount_{b} | money }}}} with?"
    buttons: {{ecocash: Ecocash, onemoney: OneMoney, zimswitch: ZimSwitch}}
    save: wallet_{b}
    next: branch_{b}
  branch_{b}:
    next:
      - if: amount_{b} | float > {100 + b}
        goto: big_{b}
      - if: wallet_{b} == "ecocash" and name_{b} | length > 3
        goto: option_{b}
      - goto: log_{b}
  big_{b}:
    say: "That is a big payment of {{{{ amount_{b} | money }}}}, {{{{ name_{b} }}}}."
    next: option_{b}
  option_{b}:
    ask: "Which safari for part {b}?"
    options:
      hwange: {{title: Hwange, description: "Three days in Hwange (part {b})"}}
      mana: {{title: Mana Pools, description: Canoeing on the Zambezi}}
      vic: Victoria Falls
    list_button: Choose
    save: safari_{b}
    next: log_{b}
  log_{b}:
    action: core.log
    with: {{message: "part {b}: {{{{ name_{b} }}}} paid {{{{ amount_{b} }}}} by {{{{ wallet_{b} }}}}", level: info}}
    next: {nxt}
  end_{b}:
    end: "Sorry {{{{ name_{b} }}}}, we stop here (part {b})."
""".splitlines()
    lines += ["  bye:", "    end: Thank you!", ""]
    return "\n".join(lines)


def time_in_process(path: str) -> float:
    inspect_template.cache_clear()
    inspect_expression.cache_clear()
    started = time.perf_counter()
    result = CliRunner().invoke(cli.main, ["validate", path])
    elapsed = time.perf_counter() - started
    assert result.exit_code == 0, result.output[-2000:]
    return elapsed


def time_subprocess(path: str) -> float:
    return timed([sys.executable, "-m", "cli", "validate", path])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    text = generate(args.steps)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench_big.yaml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        print(f"flow: {text.count(chr(10))} lines, {args.steps} steps, {len(text) // 1024} KiB")
        time_in_process(path)  # warm-up: imports and actions.load_all() happen once per process
        report("in-process (flows validate via click)", [time_in_process(path) for _ in range(args.runs)])
        report("subprocess (python -m cli validate)", [time_subprocess(path) for _ in range(args.runs)])


if __name__ == "__main__":
    main()
