"""`flows validate` on generated flows: does the time grow with the flow, and how fast does a new process
answer? Goals (issue 14.4): 5,000 steps take at most 5x the time of 1,000 (in process, the same run);
a 1,000-step validate as a new process (`python -m cli validate`) takes under 700 ms.

    python bench/validate.py [--small 100] [--steps 1000] [--large 5000] [--runs 7] [--mistakes-runs 3] [--count]
    python bench/validate.py --against /tmp/issue-checkout [--runs 7]   # new processes, pair by pair

The growth is read against a floor timed in the same rounds (the same file read by PyYAML's C loader, the
collector paused as for validate): a larger flow's data outgrow the machine's caches, which slows any program
a step, so "validate's growth / the floor's" at or under 1 says validate grows no faster than reading the
file. --count adds the instructions a step, counted by valgrind: the code's growth, whatever the machine.

The 700 ms was set where a new process took 1.5 s: a ratio of 0.467 to the code the issue was filed on
(39bf08a). --against DIR times new processes of this checkout's and DIR's `python -m cli validate` (each
run from its own root, so each imports its own code) on the same 1,000-step flow, alternated, and prints
this checkout's CPU over DIR's pair by pair: the goal as a ratio in one run, whatever the machine's speed.

The flow mixes every step kind the way real flows do: questions with checks, buttons and option lists,
actions with templated parameters and outcome routes, branches on conditions, messages and ends, each
with its own templates (so no cache makes later steps free). Timed two ways: in-process through the
click command (no answer is cached from one run to the next; CPU time of the process), and as a fresh `flows validate` subprocess
(interpreter start, imports and all: wall time, and the child's CPU time, which waiting for a busy
machine's CPU does not inflate). The sizes are timed in turns, so a busy machine slows them all
alike. Prints every run, the median and the spread (min-max), the CPU time per step of each size (equal
when validate is linear), the ratio of the medians from each size to the next (and of the fastest and
slowest runs), and the libraries the command has no use for that a new process still imported.
Then the same two sizes with a different mistake in every step (each `next:` names a step that is not
there, misspelt): every one is reported, and "did you mean" must not make the time grow with the square.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import yaml  # noqa: E402
from click.testing import CliRunner  # noqa: E402

import cli  # noqa: E402
import statistics  # noqa: E402

from benchkit import report, timed  # noqa: E402


def generate(steps: int) -> str:
    """A valid flow of `steps` steps (rounded to a multiple of 10), every step reachable, every 10 steps alike
    in size (so 5,000 steps are 5x the text of 1,000)."""
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
    for i in range(blocks):
        # Numbers of one width: every block is the same size, whatever the flow's length.
        b, prev = f"{i:04d}", f"{max(i - 1, 0):04d}"
        nxt = f"greet_{i + 1:04d}" if i + 1 < blocks else "bye"
        lines += f"""\
  greet_{b}:
    say: "Part {b}: hello {{{{ contact }}}}, your last answer was {{{{ name_{prev} | default('none') }}}}."
    next: ask_name_{b}
  ask_name_{b}:
    ask: "Part {b}: what is your name?"
    expect: {{text: {{max_length: 60}}}}
    retry: "Please send your name in at most 60 characters (part {b})."
    save: name_{b}
    next: ask_amount_{b}
  ask_amount_{b}:
    ask: "{{{{ name_{b} }}}}, how much for part {b}? At most {{{{ limit_{b}.value | default(100) | money }}}}."
    expect: {{amount: {{min: "0.01", max: "{{{{ limit_{b}.value | default(100) }}}}"}}}}
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
      - if: amount_{b} | float > {100 + i}
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


def generate_mistakes(steps: int) -> str:
    """A flow of `steps` steps whose every `next:` names a step that is not there (two letters swapped)."""
    lines = ["flow: bench_mistakes", "triggers: [bench mistakes]", "steps:"]
    for i in range(steps):
        lines += [f"  step_{i:05d}:", f"    say: Part {i}.", f"    next: stpe_{i + 1:05d}"]
    lines += [f"  step_{steps:05d}:", "    end: Thank you!", ""]
    return "\n".join(lines)


def time_in_process(path: str, exit_code: int = 0) -> float:
    """CPU seconds of this process for one validate: what it costs, even while other processes share the CPU."""
    started = time.process_time()
    result = CliRunner().invoke(cli.main, ["validate", path])
    elapsed = time.process_time() - started
    assert result.exit_code == exit_code, result.output[-2000:]
    return elapsed


def time_mistakes(folder: str, sizes: list[int], runs: int) -> None:
    """In-process CPU time of a flow with a different mistake in every step, each size in turn."""
    paths = {}
    for steps in sizes:
        paths[steps] = os.path.join(folder, f"mistakes_{steps}.yaml")
        with open(paths[steps], "w", encoding="utf-8") as f:
            f.write(generate_mistakes(steps))
    times: dict[int, list[float]] = {steps: [] for steps in sizes}
    for _ in range(runs):
        for steps in sizes:
            times[steps].append(time_in_process(paths[steps], exit_code=1))
    for steps in sizes:
        report(f"in-process CPU time, {steps} steps, a different mistake in each", times[steps])
    small, large = min(sizes), max(sizes)
    ratio = statistics.median(times[large]) / statistics.median(times[small])
    print(f"growth with a mistake in every step: {large} steps take {ratio:.2f}x the time of {small} (medians)")


# What validate has no use for: HTTP, the web server, the database, the other commands' modules (issue 14.4:
# import only what it needs). Jinja is needed: it reads every condition and every template that does not
# only show variables. importlib.metadata reads the plug-ins' entry points, only for an action name not shipped;
# engine.model and engine.messages are what a flow is built into and what a turn takes and gives; the flow
# names only core.* actions, so no other action module (each is imported when a flow names its namespace),
# and logging is imported by the action that logs.
UNNEEDED = (
    "importlib.metadata",
    "engine.model",
    "engine.messages",
    "logging",
    "actions.omari",
    "actions.paynow",
    "actions.booking",
    "actions.payment",
    "actions.reconcile",
    "requests",
    "flask",
    "werkzeug",
    "peewee",
    "psycopg2",
    "storage.payments",
    "storage.models",
    "channels.commands.chat",
    "channels.commands.channel",
)


def time_subprocess(path: str, env: dict, cpu: list[float] | None = None) -> float:
    """Wall seconds of one `python -m cli validate path`; its CPU seconds (user + system) go to cpu."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    elapsed = timed([sys.executable, "-m", "cli", "validate", path], env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if cpu is not None:
        cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return elapsed


def unneeded_imports(path: str, env: dict) -> list[str]:
    """The modules of UNNEEDED that `python -m cli validate path` imports (from -X importtime)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "cli", "validate", path],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    return [name for name in UNNEEDED if name in imported]


def cached_bytecode_env(folder: str) -> dict:
    """The environment with Python's bytecode cache on (kept in folder), as a user's machine runs the command.

    With PYTHONDONTWRITEBYTECODE set (as on some CI machines) every process compiles every module of the
    project from source again, a cost no installed copy pays after its first run.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = folder
    return env


def write_flow(folder: str, steps: int) -> str:
    text = generate(steps)
    path = os.path.join(folder, f"bench_{steps}.yaml")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"flow: {text.count(chr(10))} lines, {steps} steps, {len(text) // 1024} KiB")
    return path


def child_cpu(root: str, path: str, env: dict) -> float:
    """CPU seconds (user + system) of one `python -m cli validate path` run from root (its code imported)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [sys.executable, "-m", "cli", "validate", path], cwd=root, env=env, capture_output=True, text=True
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert done.returncode == 0, f"{root}: " + done.stdout[-2000:] + done.stderr[-2000:]
    return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def time_against(other: str, path: str, runs: int, tmp: str) -> None:
    """New processes of this checkout and of other on the same flow, alternated (who goes first too), each
    with its own bytecode cache written by a first run; this checkout's CPU over other's, pair by pair."""
    sides = {
        ROOT: cached_bytecode_env(os.path.join(tmp, "pycache")),
        other: cached_bytecode_env(os.path.join(tmp, "pyc-other")),
    }
    cpu: dict[str, list[float]] = {root: [] for root in sides}
    for root, env in sides.items():
        child_cpu(root, path, env)
    for i in range(runs):
        for root in list(sides) if i % 2 == 0 else list(sides)[::-1]:
            cpu[root].append(child_cpu(root, path, sides[root]))
    for root in sides:
        report(f"new process CPU time (user + system), {root}", cpu[root])
    ratios = sorted(mine / theirs for mine, theirs in zip(cpu[ROOT], cpu[other]))
    print(
        f"this checkout / {other}: {statistics.median(ratios):.3f} pair by pair ({ratios[0]:.3f}-{ratios[-1]:.3f}); "
        "against the code issue 14 was filed on (39bf08a) the goal is <= 0.467 (1.5 s -> 700 ms)"
    )


def time_floor(path: str) -> float:
    """CPU seconds of the floor: the flow read into Python by PyYAML's C loader (`yaml.load`, CSafeLoader),
    the least any Python program does with the file. What it costs a step at 5,000 steps over 1,000 is this
    machine's own (its caches hold less of the larger data), whatever the code: validate's growth is read
    against it. The collector paused while it reads, as engine.load pauses it for validate: running, its
    full collections over the growing data make the floor itself grow with the square (13x at 5x the steps)."""
    gc.disable()
    try:
        started = time.process_time()
        with open(path, encoding="utf-8") as f:
            yaml.load(f.read(), Loader=yaml.CSafeLoader)
        return time.process_time() - started
    finally:
        gc.enable()


def time_sizes(paths: dict[int, str], runs: int) -> tuple[dict[int, list[float]], dict[int, list[float]]]:
    """In-process CPU seconds of each flow and of its floor, runs times, the sizes taken in turns (a busy
    machine slows them all alike)."""
    time_in_process(paths[min(paths)])  # warm-up: imports and actions.load_all() happen once per process
    time_floor(paths[min(paths)])
    times: dict[int, list[float]] = {steps: [] for steps in paths}
    floors: dict[int, list[float]] = {steps: [] for steps in paths}
    gc.collect()
    for _ in range(runs):
        for steps, path in paths.items():
            times[steps].append(time_in_process(path))
            gc.collect()  # the collector's work for one size not billed to the next, in either timing
            floors[steps].append(time_floor(path))
            gc.collect()
    return times, floors


def count_instructions(paths: dict[int, str]) -> None:
    """Instructions of validate a step at each size, counted by valgrind (cachegrind, no cache simulated):
    the same on every machine and every run, so the growth it shows is the code's alone. A process that
    validates only the smallest flow is counted too and taken off (each process validates it first, as a
    warm-up), leaving what each larger flow adds."""
    if shutil.which("valgrind") is None:
        print("instructions: valgrind is not installed (apt install valgrind), not counted")
        return
    smallest = paths[min(paths)]
    driver = (
        "import os, sys; from click.testing import CliRunner; import cli\n"
        "for path in sys.argv[1:]:\n"
        "    result = CliRunner().invoke(cli.main, ['validate', path]); assert result.exit_code == 0, result.output\n"
        "sys.stdout.flush(); os._exit(0)\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    with tempfile.TemporaryDirectory() as tmp:
        runs = {0: [smallest], **{steps: [smallest, path] for steps, path in paths.items() if path != smallest}}
        procs = {
            steps: subprocess.Popen(
                ["valgrind", "--tool=cachegrind", "--cache-sim=no", f"--cachegrind-out-file={tmp}/{steps}.out"]
                + [sys.executable, "-c", driver, *args],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for steps, args in runs.items()
        }
        counted: dict[int, int] = {}
        for steps, proc in procs.items():
            assert proc.wait() == 0, f"valgrind failed on the {steps}-step flow"
            with open(f"{tmp}/{steps}.out") as out:
                counted[steps] = next(int(line.split()[1]) for line in out if line.startswith("summary:"))
    added = {steps: counted[steps] - counted[0] for steps in counted if steps}
    print(
        "instructions a step (valgrind): "
        + ", ".join(f"{steps}: {n / steps / 1000:.1f}k" for steps, n in sorted(added.items()))
    )
    sizes = sorted(added)
    for small, large in zip(sizes, sizes[1:]):
        print(
            f"instruction growth: {large} steps take {added[large] / added[small]:.3f}x the instructions of {small}; "
            f"steps x{large / small:g}"
        )


def report_growth(times: dict[int, list[float]], floors: dict[int, list[float]]) -> None:
    """Each size's CPU time, its cost per step, and each size's time over the one before (medians); the same
    for the floor, and validate's growth over the floor's."""
    sizes = sorted(times)
    for steps in sizes:
        report(f"in-process CPU time, {steps} steps (flows validate via click)", times[steps])
    for steps in sizes:
        report(f"floor, {steps} steps (yaml.load with the C loader, same rounds)", floors[steps])
    per_step = ", ".join(f"{steps}: {statistics.median(times[steps]) / steps * 1e6:.0f}" for steps in sizes)
    print(f"per step (median): {per_step} us; a linear validate keeps these equal")
    for small, large in zip(sizes, sizes[1:]):
        ratio = statistics.median(times[large]) / statistics.median(times[small])
        best = min(times[large]) / min(times[small])
        # Each round times every size one after the other: a round's own ratio sees the machine as it was then
        # (a shared machine's speed drifts by a fifth within a minute), as bench/peer.py's pairs do.
        pairs = sorted(b / a for a, b in zip(times[small], times[large]))
        print(
            f"growth: {large} steps take {ratio:.2f}x the time of {small} (medians; fastest runs {best:.2f}x, "
            f"slowest {max(times[large]) / max(times[small]):.2f}x; round by round {statistics.median(pairs):.2f}x, "
            f"{pairs[0]:.2f}-{pairs[-1]:.2f}x); steps x{large / small:g}, goal <= {large / small:g}x"
        )
        floor = statistics.median(floors[large]) / statistics.median(floors[small])
        floor_pairs = sorted(b / a for a, b in zip(floors[small], floors[large]))
        # Round by round: validate's growth over the floor's in the same round, both seeing the machine as it was.
        over = sorted(
            (v5 / v1) / (f5 / f1) for v1, v5, f1, f5 in zip(times[small], times[large], floors[small], floors[large])
        )
        print(
            f"  floor: {large} steps take {floor:.2f}x the time of {small} (round by round "
            f"{statistics.median(floor_pairs):.2f}x); validate's growth / the floor's: {ratio / floor:.2f} "
            f"(round by round {statistics.median(over):.2f}, {over[0]:.2f}-{over[-1]:.2f}); <= 1: no faster growth "
            "than reading the file"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--large", type=int, default=5000, help="the larger flow, for the growth ratio")
    parser.add_argument("--small", type=int, default=100, help="a smaller flow, to show the growth from it")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--mistakes-runs", type=int, default=3, help="runs of the flows with a mistake in each step")
    parser.add_argument(
        "--count", action="store_true", help="also count validate's instructions a step with valgrind (~1 min)"
    )
    parser.add_argument("--against", metavar="DIR", help="another checkout: new processes alternated, CPU ratio only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.against:
            time_against(os.path.abspath(args.against), write_flow(tmp, args.steps), args.runs, tmp)
            return
        paths = {steps: write_flow(tmp, steps) for steps in sorted({args.small, args.steps, args.large})}
        report_growth(*time_sizes(paths, args.runs))
        if args.count:
            count_instructions(paths)
        small = paths[args.steps]
        env = cached_bytecode_env(os.path.join(tmp, "pycache"))
        time_subprocess(small, env)  # the first run writes the bytecode cache
        cpu: list[float] = []
        report(
            f"subprocess, {args.steps} steps (python -m cli validate, bytecode cached; goal < 700 ms)",
            [time_subprocess(small, env, cpu) for _ in range(args.runs)],
        )
        report("  its CPU time (user + system)", cpu)
        print(f"imported without need: {', '.join(unneeded_imports(small, env)) or 'none'}")
        if args.mistakes_runs:
            time_mistakes(tmp, [args.steps, args.large], args.mistakes_runs)


if __name__ == "__main__":
    main()
