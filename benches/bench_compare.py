"""ember against Ray 2.60: the same Python workloads, run alternately, one table.

Each workload of benches/suite.py that both frameworks run is run against
ember and against Ray in turn (ember, Ray, then Ray, ember on the next round,
and so on), each run in a fresh process on a fresh local cluster: ember from
.venv (`import ember as ray`), Ray from .venv-ray (`import ray`, made by
benches/setup_ray_venv.sh, which this script runs first: a no-op once done).
It prints both figures, how many times better ember is, and, for the task and
actor rates, whether that is at least 10x.

    .venv/bin/python benches/bench_compare.py                     # every shared workload, 1 round
    .venv/bin/python benches/bench_compare.py --quick --workloads tasks_sync,tasks_async,put_small
    .venv/bin/python benches/bench_compare.py --rounds 3 --json compare.json   # medians of 3
    .venv-ray/bin/python benches/bench_compare.py --framework ray --workload tasks_sync --json -

The last form runs one workload in this process and prints its result as one
JSON line (what the comparison runs in each child; see suite.py). Children's
output goes to a log directory (--logs, default a temporary one), shown for a
failed run, or as it comes with --verbose.

Exit code: 0 when every run worked, whatever the figures; 1 when one failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import suite  # benches/ is on the path now
from suite import FIGURES, fmt

RATIO_NEEDED = 10.0


def shared_workloads() -> list[str]:
    return [n for n, wl in suite.WORKLOADS.items() if set(wl.frameworks) >= {"ember", "ray"}]


def run_child(python: str, framework: str, workload: str, args, log_path: str) -> dict:
    timeout = suite.WORKLOADS[workload].timeout_s * (2 if framework == "ray" else 1)
    with tempfile.NamedTemporaryFile(prefix="cmp-", suffix=".json", delete=False) as f:
        result_path = f.name
    cmd = [python, os.path.join(HERE, "suite.py"), "--framework", framework, "--workload", workload,
           "--num-cpus", str(args.num_cpus), "--json", result_path] + (["--quick"] if args.quick else [])
    env = dict(os.environ)
    for var in ("RAY_ADDRESS", "EMBER_ADDRESS"):  # always a fresh local cluster
        env.pop(var, None)
    start = time.perf_counter()
    doc: dict = {}
    try:
        with open(log_path, "w") as log:
            log.write("$ " + " ".join(cmd) + "\n")
            log.flush()
            out = None if args.verbose else log
            proc = subprocess.run(cmd, check=False, cwd=REPO, env=env, timeout=timeout, stdin=subprocess.DEVNULL,
                                  stdout=out, stderr=subprocess.STDOUT if out else None)
        with open(result_path) as f:
            text = f.read()
        doc = json.loads(text) if text else {}
        if proc.returncode != 0 and "error" not in doc:
            doc["error"] = f"exit code {proc.returncode}"
    except subprocess.TimeoutExpired:
        doc["error"] = f"timed out after {timeout:.0f} s"
    except (OSError, ValueError) as e:
        doc["error"] = f"{type(e).__name__}: {e}"
    finally:
        if os.path.exists(result_path):
            os.unlink(result_path)
    doc.setdefault("figures", {})
    doc["wall_s"] = time.perf_counter() - start
    doc["log"] = log_path
    return doc


def advantage(name: str, ember, ray) -> float | None:
    """How many times better ember's figure is than Ray's (> 1: ember better)."""
    if ember is None or ray is None or ember <= 0 or ray <= 0:
        return None
    better = FIGURES[name].better if name in FIGURES else "higher"
    return ember / ray if better == "higher" else ray / ember


def print_table(workloads: list[str], medians: dict, rounds: int) -> list[str]:
    """The comparison table; returns the task/actor rates under 10x."""
    low = []
    print()
    print(f"{'figure':<26} {'ember':>14} {'Ray 2.60':>14} {'ember vs Ray':>13}  "
          f"{'>=10x':<6} {'ember target':<20}")
    for workload in workloads:
        for name in suite.WORKLOADS[workload].figures:
            fig = FIGURES[name]
            e, r = medians["ember"].get(name), medians["ray"].get(name)
            if e is None and r is None:
                continue
            adv = advantage(name, e, r)
            adv_s = "-" if adv is None else f"{adv:,.1f}x " + ("better" if adv >= 1 else "worse")
            check = ""
            if fig.rate_of and adv is not None:
                check = "OK" if adv >= RATIO_NEEDED else "LOW"
                if adv < RATIO_NEEDED:
                    low.append(name)
            ok = suite.passes(name, e)
            cmp = ">=" if fig.better == "higher" else "<="
            target = "" if fig.target is None else (
                f"{cmp} {fmt(fig.target, fig.unit)} {'PASS' if ok else 'MISS'}")
            print(f"{name:<26} {fmt(e, fig.unit):>14} {fmt(r, fig.unit):>14} {adv_s:>13}  "
                  f"{check:<6} {target:<20}")
    print(f"({'median of ' + str(rounds) + ' rounds' if rounds > 1 else 'one round'}; "
          f"'ember vs Ray': ember's figure / Ray's, inverted where lower is better; "
          f">=10x applies to the task and actor rates)")
    return low


def compare(args) -> int:
    workloads = shared_workloads()
    if args.workloads:
        workloads = args.workloads.split(",")
        for w in workloads:
            if w not in suite.WORKLOADS:
                sys.exit(f"unknown workload {w!r}; `benches/suite.py --list` shows them")
            if "ray" not in suite.WORKLOADS[w].frameworks:
                sys.exit(f"workload {w!r} runs on ember only: see benches/bench_all.py")
    if args.ray_python is None:
        setup = os.path.join(HERE, "setup_ray_venv.sh")
        subprocess.run(["bash", setup], check=True, cwd=REPO)
        args.ray_python = os.path.join(REPO, ".venv-ray", "bin", "python")
    pythons = {"ember": args.ember_python, "ray": args.ray_python}
    for fw, py in pythons.items():
        if not os.access(py, os.X_OK):
            sys.exit(f"no interpreter for {fw}: {py} (ember: make build; Ray: "
                     f"benches/setup_ray_venv.sh)")
    logs = args.logs or tempfile.mkdtemp(prefix="ember-compare-")
    os.makedirs(logs, exist_ok=True)
    print(f"ember vs Ray: {', '.join(workloads)}; {args.rounds} round(s)"
          f"{', quick' if args.quick else ''}; clusters of {args.num_cpus} CPUs; "
          f"{os.cpu_count()} CPUs here, load average {os.getloadavg()[0]:.2f}; logs in {logs}",
          flush=True)
    started = time.perf_counter()
    runs: dict = {fw: {w: [] for w in workloads} for fw in pythons}
    failed = []
    for workload in workloads:
        for rnd in range(args.rounds):
            order = ("ember", "ray") if rnd % 2 == 0 else ("ray", "ember")
            for fw in order:
                log_path = os.path.join(logs, f"{workload}-{fw}-{rnd + 1}.log")
                doc = run_child(pythons[fw], fw, workload, args, log_path)
                runs[fw][workload].append(doc)
                shown = ", ".join(
                    f"{k} {fmt(v, FIGURES[k].unit)}" for k, v in doc["figures"].items()
                    if k in suite.WORKLOADS[workload].figures)
                status = f"FAILED: {doc['error']}" if "error" in doc else shown
                print(f"  {workload:<20} {fw:<5} round {rnd + 1}: {status}  ({doc['wall_s']:.1f} s)",
                      flush=True)
                if "error" in doc:
                    failed.append(f"{workload}/{fw}")
                    if not args.verbose:
                        with open(log_path) as f:
                            tail = f.read()[-3000:]
                        print("    " + tail.replace("\n", "\n    "), flush=True)
    medians: dict = {}
    for fw in pythons:
        medians[fw] = {}
        for workload in workloads:
            per_figure: dict = {}
            for doc in runs[fw][workload]:
                for k, v in doc["figures"].items():
                    if isinstance(v, (int, float)):
                        per_figure.setdefault(k, []).append(v)
            medians[fw].update({k: statistics.median(v) for k, v in per_figure.items()})
    low = print_table(workloads, medians, args.rounds)
    versions = {fw: next((d.get("version") for w in workloads for d in runs[fw][w]
                          if d.get("version")), "?") for fw in pythons}
    print(f"ember {versions['ember']} vs Ray {versions['ray']}: "
          f"{len(low)} task/actor rate(s) under {RATIO_NEEDED:.0f}x"
          f"{' (' + ', '.join(low) + ')' if low else ''}; {len(failed)} run(s) failed"
          f"{' (' + ', '.join(failed) + ')' if failed else ''}; {time.perf_counter() - started:.0f} s")
    if args.json:
        doc = {
            "ember": medians["ember"], "ray": medians["ray"],
            "advantage": {k: advantage(k, medians["ember"].get(k), v)
                          for k, v in medians["ray"].items() if k in FIGURES},
            "below_10x": low, "failed": failed, "runs": runs, "versions": versions,
            "config": {"quick": args.quick, "rounds": args.rounds, "num_cpus": args.num_cpus,
                       "machine_cpus": os.cpu_count(), "python": platform.python_version(),
                       "load_average": os.getloadavg(),
                       "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
        }
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
        print(f"wrote {args.json}")
    return 1 if failed else 0


def main() -> int:
    if "--framework" in sys.argv[1:]:  # one run, in this process (what each child does)
        return suite.main()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", help="comma-separated (default: every workload both run)")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each framework per workload")
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    parser.add_argument("--num-cpus", type=int, default=2, help="CPUs of each local cluster")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    parser.add_argument("--logs", metavar="DIR", help="children's output (default: a temporary dir)")
    parser.add_argument("--verbose", action="store_true", help="show children's output as it comes")
    parser.add_argument("--ember-python", default=os.path.join(REPO, ".venv", "bin", "python"))
    parser.add_argument("--ray-python", default=None,
                        help="default: .venv-ray/bin/python, after benches/setup_ray_venv.sh")
    args = parser.parse_args()
    return compare(args)


if __name__ == "__main__":
    sys.exit(main())
