"""Where the embedded shape spends its time: a summary of a ``py-spy record --format raw`` file.

    make profile                    # records the embedded run and prints this summary
    python -m plantwatch.bench.profile profile.txt [--top 25]

py-spy samples every thread of the process from outside (no instrumentation, no slowdown worth
the name); this groups its samples by thread role and by function. *Self* counts the samples a
function was on top of the stack (its own work), *total* the samples it was anywhere on the
stack (its work and its callees'). Idle threads (waiting on a lock or a queue) are left out.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_LINE = re.compile(r":\d+\)")
_IDLE = ("Condition.wait", "Event.wait", "_wait_for_tstate_lock", "Thread.join", "sleep")

#: thread roles, recognised by a function on their stacks
ROLES = (
    ("store writer", "_Writer._run"),
    ("stream (decode, pipeline)", "EmbeddedPlant._run_stream"),
    ("devices (simulator, SDK)", "EmbeddedPlant._produce"),
    ("SDK sender", "EdgeClient._run"),
    ("alerts", "AlertService._run"),
    ("start-up and summary", "cmd_run"),
)


def summarize(path: Path, top: int = 25) -> str:
    self_: Counter[str] = Counter()
    total: Counter[str] = Counter()
    roles: Counter[str] = Counter()
    busy = 0
    for line in path.read_text().splitlines():
        stack, _, n_text = line.rpartition(" ")
        if not stack or not n_text.isdigit():
            continue
        n = int(n_text)
        frames = [_LINE.sub(")", f) for f in stack.split(";") if f]
        if not frames or frames[-1].startswith(_IDLE):
            continue
        busy += n
        self_[frames[-1]] += n
        for f in set(frames):
            total[f] += n
        role = next((r for r, marker in ROLES if any(marker in f for f in frames)), "other")
        roles[role] += n
    if busy == 0:
        return f"{path}: no busy samples"

    def pct(n: int) -> str:
        return f"{100 * n / busy:5.1f} %"

    out = [f"{busy:,} busy samples in {path}", "", "by thread"]
    out += [f"  {pct(n)}  {role}" for role, n in roles.most_common()]
    out += ["", f"top {top} by self time (the function's own work)"]
    out += [f"  {pct(n)}  {f}" for f, n in self_.most_common(top)]
    ours = [(f, n) for f, n in total.most_common() if "plantwatch/" in f]
    out += ["", f"top {top} plantwatch functions by total time (with callees)"]
    out += [f"  {pct(n)}  {f}" for f, n in ours[:top]]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("raw", type=Path, help="py-spy record --format raw output")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    print(summarize(args.raw, args.top))


if __name__ == "__main__":
    main()
