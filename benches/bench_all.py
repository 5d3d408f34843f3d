"""ember's full end-to-end benchmark: one table of every figure against its target.

Runs, against ember:
- every workload of benches/suite.py (Python through the Ray-compatible API),
  each in a fresh process on a fresh local cluster, the multi-node one
  (``cluster``: a head and 3 nodes on 127.0.0.1-4) included;
- the Go client bench (``cd sdk-go && go run ./cmd/bench``);
- the Rust client bench (``cargo run --release -q -p ember --example bench``);
then prints one table (figure, value, target, PASS/MISS).

    .venv/bin/python benches/bench_all.py                 # the full run (make bench)
    .venv/bin/python benches/bench_all.py --quick         # CI smoke pass: short runs
    .venv/bin/python benches/bench_all.py --json out.json # also write every figure as JSON
    .venv/bin/python benches/bench_all.py --workloads tasks_sync,chain --no-go --no-rust

Exit code: 0 when everything ran, whether targets were met or missed; 1 when
a workload or a client bench failed (an exception, a wrong value, a crash).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import suite  # benches/ is on the path now
from suite import FIGURES, Figure, fmt

# Figures of the Go and Rust client benches: (source, name) -> (regex on their output, Figure).
CLIENT_FIGURES = {
    "go": {
        "go_sync_per_s": (r"^Go->Go sync:\s+([\d.]+)", Figure(10_000, "higher", "/s")),
        "go_async_per_s": (r"^Go->Go async:\s+([\d.]+)", Figure(50_000, "higher", "/s")),
        "go_to_python_sync_per_s": (r"^Go->Python sync:\s+([\d.]+)", Figure(None, "higher", "/s")),
        "go_to_python_async_per_s": (r"^Go->Python async:\s+([\d.]+)", Figure(None, "higher", "/s")),
    },
    "rust": {
        "rust_async_per_s": (r"^Rust->Rust async calls \(sync fn\).*?:\s+([\d.]+) calls/s",
                             Figure(100_000, "higher", "/s")),
        "rust_async_async_fn_per_s": (r"^Rust->Rust async calls \(async fn\).*?:\s+([\d.]+) calls/s",
                                      Figure(None, "higher", "/s")),
        "rust_sync_per_s": (r"^Rust->Rust sync round trips \(sync fn\).*?:\s+([\d.]+) /s",
                            Figure(10_000, "higher", "/s")),
        "rust_sync_async_fn_per_s": (r"^Rust->Rust sync round trips \(async fn\).*?:\s+([\d.]+) /s",
                                     Figure(None, "higher", "/s")),
        "rust_put_get_per_s": (r"^small put \+ get round trips:\s+([\d.]+) /s",
                               Figure(None, "higher", "/s")),
    },
}


def all_figures() -> dict[str, Figure]:
    figures = dict(FIGURES)
    for table in CLIENT_FIGURES.values():
        figures.update({name: fig for name, (_, fig) in table.items()})
    return figures


def judge(fig: Figure, value) -> bool | None:
    if fig.target is None or value is None:
        return None
    return value >= fig.target if fig.better == "higher" else value <= fig.target


def banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def run_workload(python: str, name: str, quick: bool, num_cpus: int) -> dict:
    """One suite workload in a fresh process; its output passes through."""
    wl = suite.WORKLOADS[name]
    with tempfile.NamedTemporaryFile(prefix=f"bench-{name}-", suffix=".json", delete=False) as f:
        path = f.name
    cmd = [python, os.path.join(HERE, "suite.py"), "--framework", "ember", "--workload", name,
           "--num-cpus", str(num_cpus), "--json", path] + (["--quick"] if quick else [])
    try:
        proc = subprocess.run(cmd, check=False, cwd=REPO, timeout=wl.timeout_s, stdin=subprocess.DEVNULL)
        with open(path) as f:
            text = f.read()
        doc = json.loads(text) if text else {}
        if proc.returncode != 0 and "error" not in doc:
            doc["error"] = f"exit code {proc.returncode}"
    except subprocess.TimeoutExpired:
        doc = {"error": f"timed out after {wl.timeout_s:.0f} s"}
    except (OSError, ValueError) as e:
        doc = {"error": f"{type(e).__name__}: {e}"}
    finally:
        if os.path.exists(path):
            os.unlink(path)
    doc.setdefault("figures", {})
    doc["workload"] = name
    return doc


def run_client(source: str, cmd: list[str], cwd: str, timeout: float) -> dict:
    """A Go or Rust client bench; its output is shown and parsed."""
    tool = cmd[0]
    if shutil.which(tool) is None:
        return {"figures": {}, "skipped": f"'{tool}' not found"}
    print("$ " + " ".join(cmd) + (f"   (in {os.path.relpath(cwd, REPO)})" if cwd != REPO else ""),
          flush=True)
    env = dict(os.environ)
    venv_ember = os.path.join(REPO, ".venv", "bin", "ember")
    if "EMBER_BIN" not in env and os.access(venv_ember, os.X_OK):
        env["EMBER_BIN"] = venv_ember
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, check=False, cwd=cwd, env=env, timeout=timeout, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except subprocess.TimeoutExpired as e:
        output = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        print(output, flush=True)
        return {"figures": {}, "error": f"timed out after {timeout:.0f} s"}
    print(proc.stdout, end="", flush=True)
    figures = {}
    for name, (pattern, _) in CLIENT_FIGURES[source].items():
        match = re.search(pattern, proc.stdout, re.MULTILINE)
        if match:
            figures[name] = float(match.group(1))
    doc = {"figures": figures, "seconds": time.perf_counter() - start}
    if proc.returncode != 0:
        doc["error"] = f"exit code {proc.returncode}"
    elif not figures:
        doc["error"] = "no figure found in its output"
    return doc


def go_command(quick: bool) -> list[str]:
    cmd = [os.environ.get("GO", "go"), "run", "./cmd/bench"]
    if quick:
        cmd += ["-sync", "1000", "-async", "5000", "-rounds", "1", "-py-sync", "500",
                "-py-async", "2000"]
    return cmd


def rust_command(quick: bool) -> list[str]:
    cmd = [os.environ.get("CARGO", "cargo"), "run", "--release", "-q", "-p", "ember",
           "--example", "bench"]
    if quick:
        cmd += ["--", "--calls", "20000", "--round-trips", "2000"]
    return cmd


def print_table(sections: list[tuple[str, list[str]]], values: dict, figures: dict) -> None:
    print()
    print(f"{'figure':<28} {'ember':>16} {'target':>14}  {'':<4}")
    for title, names in sections:
        print(f"-- {title}")
        for name in names:
            fig = figures[name]
            value = values.get(name)
            ok = judge(fig, value)
            mark = "" if ok is None else ("PASS" if ok else "MISS")
            cmp = ">=" if fig.better == "higher" else "<="
            target = f"{cmp} {fmt(fig.target, fig.unit)}" if fig.target is not None else "-"
            print(f"{name:<28} {fmt(value, fig.unit):>16} {target:>14}  {mark:<4}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs (CI smoke pass)")
    parser.add_argument("--json", metavar="PATH", help="also write every figure as JSON here")
    parser.add_argument("--num-cpus", type=int, default=2, help="CPUs of each local cluster")
    parser.add_argument("--workloads", help="comma-separated suite workloads (default: all; "
                        "`benches/suite.py --list`); 'none' runs none")
    parser.add_argument("--no-cluster", action="store_true", help="skip the multi-node workload")
    parser.add_argument("--no-go", action="store_true", help="skip the Go client bench")
    parser.add_argument("--no-rust", action="store_true", help="skip the Rust client bench")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter for the workloads (default: this one)")
    args = parser.parse_args()

    names = [n for n, wl in suite.WORKLOADS.items() if "ember" in wl.frameworks]
    if args.workloads:
        names = [] if args.workloads == "none" else args.workloads.split(",")
        unknown = [n for n in names if n not in suite.WORKLOADS]
        if unknown:
            parser.error(f"unknown workloads {unknown}; `benches/suite.py --list` shows them")
    if args.no_cluster:
        names = [n for n in names if n != "cluster"]

    started = time.perf_counter()
    print(f"ember benchmark: {', '.join(names) or 'no suite workloads'}"
          f"{'' if args.no_go else ', Go client'}{'' if args.no_rust else ', Rust client'}; "
          f"{os.cpu_count()} CPUs here, clusters of --num-cpus {args.num_cpus}"
          f"{', quick' if args.quick else ''}", flush=True)
    runs: dict[str, dict] = {}
    for name in names:
        banner(f"{name}: {suite.WORKLOADS[name].what}")
        runs[name] = run_workload(args.python, name, args.quick, args.num_cpus)
        if "error" in runs[name]:
            print(f"  FAILED: {runs[name]['error']}", flush=True)
    if not args.no_go:
        banner("Go client -> Go and Python functions (sdk-go/cmd/bench)")
        runs["go"] = run_client("go", go_command(args.quick), os.path.join(REPO, "sdk-go"), 900)
    if not args.no_rust:
        banner("Rust client -> Rust functions (sdk-rust/examples/bench.rs)")
        runs["rust"] = run_client("rust", rust_command(args.quick), REPO, 1200)

    figures = all_figures()
    values: dict = {}
    sections = []
    for name, doc in runs.items():
        values.update(doc.get("figures", {}))
        if name in ("go", "rust"):
            shown = list(CLIENT_FIGURES[name])
            title = {"go": "Go client", "rust": "Rust client"}[name]
        else:
            wl = suite.WORKLOADS[name]
            shown = [f for f in wl.figures if f in figures]
            title = name + (" (ember only)" if wl.frameworks == ("ember",) else "")
        if "error" in doc:
            title += f"  FAILED: {doc['error']}"
        elif "skipped" in doc:
            title += f"  skipped: {doc['skipped']}"
        sections.append((title, shown))
    print_table(sections, values, figures)
    failed = [name for name, doc in runs.items() if "error" in doc]
    judged = {k: judge(figures[k], v) for k, v in values.items() if k in figures}
    missed = sorted(k for k, ok in judged.items() if ok is False)
    print(f"\n{sum(1 for ok in judged.values() if ok)} targets met, {len(missed)} missed"
          f"{' (' + ', '.join(missed) + ')' if missed else ''}; "
          f"{len(failed)} failed{' (' + ', '.join(failed) + ')' if failed else ''}; "
          f"{time.perf_counter() - started:.0f} s. Figures are wall-clock on a shared machine: "
          f"compare only runs made on a quiet one.")

    if args.json:
        doc = {
            "figures": values,
            "targets": {k: f.target for k, f in figures.items() if f.target is not None},
            "better": {k: f.better for k, f in figures.items()},
            "units": {k: f.unit for k, f in figures.items()},
            "pass": judged,
            "errors": {k: d["error"] for k, d in runs.items() if "error" in d},
            "skipped": {k: d["skipped"] for k, d in runs.items() if "skipped" in d},
            "runs": runs,
            "config": {"quick": args.quick, "num_cpus": args.num_cpus,
                       "machine_cpus": os.cpu_count(), "python": platform.python_version(),
                       "load_average": os.getloadavg(),
                       "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
        }
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
        print(f"wrote {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
