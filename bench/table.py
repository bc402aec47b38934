#!/usr/bin/env python3
"""Markdown speed table from the JSON lines that docs/bench/speed.sh writes.

  python3 bench/table.py docs/bench/speed-DATE.jsonl

Input lines (standard library only, any Python 3.8+):
  {"meta": {...}}                                            the run's machine and settings
  {"round": N, "load": "...", "cmd": "...", "result": {...}} one benchmark's JSON line
  {"round": N, "cmd": "...", "error": "..."}                 a benchmark that gave none
A bare JSON line of `cargo xtask bench` or bench/bench.py counts as round 1.

One row per benchmarked step and implementation, one column of seconds per step for each
round, then samples/s (from the mean over the rounds), the peak resident memory (largest
over the rounds) and, on each step's default organics row (its first organics row, the
one speed.sh runs first), the ratio of its seconds per step to those of the faster
ORGaNICs peer (PyTorch or JAX) in each round: below 1, organics is faster. The LSTM
baseline's first row is compared with PyTorch's LSTM the same way.
"""
import json
import statistics
import sys

PEERS = {"torch": "PyTorch", "jax": "JAX", "torch-lstm": "PyTorch LSTM"}


def step_of(result: dict, cmd: str) -> str:
    """The benchmarked training step, e.g. 'sMNIST n=128, batch 256, 784 steps'."""
    if result["task"] == "smnist":
        return f"sMNIST n={result['hidden']}, batch {result['batch']}, {result['seq']} steps"
    learned = any(result.get(k) for k in ("learned_wr", "learn_recurrence", "learned_recurrence"))
    learned = learned or "--learned" in cmd
    recurrence = "learned W_r (Algorithm 1)" if learned else "W_r = I"
    return f"static MNIST {recurrence}, batch {result['batch']}"


def implementation_of(result: dict) -> str:
    if "impl" in result:  # bench/bench.py
        name = PEERS.get(result["impl"], result["impl"])
        if result.get("variant") == "fused":
            name += ", fused layout"
        if result.get("versions", {}).get("optimizer") == "hand-written":
            name += ", written-out Adam"
        threads = result["threads"]
        return f"{name} ({threads} thread{'' if threads == 1 else 's'})"
    model = "organics" if result.get("model", "organics") == "organics" else f"organics {result['model']}"
    details = [result.get("backend"), result.get("gradients") and f"{result['gradients']} gradients",
               result.get("optimizer")]
    return f"{model}: " + ", ".join(d for d in details if d)


def kind_of(row: dict) -> str:
    """'lstm' for the LSTM baselines (ours and PyTorch's), 'organics' for everything else."""
    result = next(iter(row["rounds"].values()))
    return "lstm" if result.get("model") == "lstm" or result.get("impl") == "torch-lstm" else "organics"


def seconds(s: float) -> str:
    return f"{s * 1000:.3g} ms" if s < 1 else f"{s:.3g} s"


def main(paths):
    meta, failures = [], []
    rows = {}  # (step, implementation) -> {"rounds": {round: result}, "organics": bool}
    for path in paths:
        with open(path) as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                entry = json.loads(line)
                if "meta" in entry:
                    meta.append(entry["meta"])
                    continue
                if "error" in entry:
                    failures.append(entry)
                    continue
                result = entry.get("result", entry)
                cmd = entry.get("cmd", "")
                key = (step_of(result, cmd), implementation_of(result))
                row = rows.setdefault(key, {"rounds": {}, "organics": "impl" not in result})
                rnd = entry.get("round", 1)
                if rnd in row["rounds"]:
                    print(f"{path}:{number}: a second result for {key[1]} in round {rnd}, ignored",
                          file=sys.stderr)
                    continue
                row["rounds"][rnd] = result
    if not rows:
        sys.exit("no results")

    rounds = sorted({r for row in rows.values() for r in row["rounds"]})
    steps = list(dict.fromkeys(step for step, _ in rows))
    header = ["step", "implementation", *(f"round {r}" for r in rounds), "samples/s", "peak memory",
              "organics ÷ faster peer"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * 2 + "---:|" * (len(header) - 2))
    for step in steps:
        in_step = [(impl, row) for (s, impl), row in rows.items() if s == step]
        # Each model is compared with its own kind: ORGaNICs with the ORGaNICs peers, the
        # LSTM baseline with PyTorch's LSTM; the ratio goes on each kind's first row.
        peers = {kind: [row for impl, row in in_step if not row["organics"] and kind_of(row) == kind]
                 for kind in ("organics", "lstm")}
        defaults = {next((impl for impl, row in in_step if row["organics"] and kind_of(row) == kind),
                         None) for kind in ("organics", "lstm")}
        for i, (impl, row) in enumerate(in_step):
            results = row["rounds"]
            mean = statistics.fmean(r["sec_per_step"] for r in results.values())
            batch = next(iter(results.values()))["batch"]
            rss = [r["peak_rss_mb"] for r in results.values() if r.get("peak_rss_mb") is not None]
            ratio = ""
            kind_peers = peers[kind_of(row)]
            if impl in defaults and kind_peers:
                parts = []
                for rnd in rounds:
                    times = [(p["rounds"][rnd]["sec_per_step"], PEERS[p["rounds"][rnd]["impl"]])
                             for p in kind_peers if rnd in p["rounds"]]
                    if rnd in results and times:
                        fastest, name = min(times)
                        parts.append(f"{results[rnd]['sec_per_step'] / fastest:.2f} ({name})")
                ratio = " / ".join(parts)
            cells = [step if i == 0 else "", impl,
                     *(seconds(results[r]["sec_per_step"]) if r in results else "–" for r in rounds),
                     f"{batch / mean:,.0f}", f"{max(rss):,.0f} MB" if rss else "–", ratio]
            print("| " + " | ".join(cells) + " |")

    print()
    print("Seconds per training step (forward, backward, Adam): mean of the timed steps of each "
          "run; rounds interleave every row, so a change of the machine's load reaches all of "
          "them. samples/s from the mean over the rounds; peak memory = the process's peak "
          "resident set, largest over the rounds. Ratio below 1: organics is faster.")
    for m in meta:
        print(f"Measured {m.get('date', '?')} on {m.get('cpu', '?')} ({m.get('cpus', '?')} CPUs), "
              f"commit {m.get('commit', '?')}; {m.get('rounds', '?')} round(s) of "
              f"{m.get('only', '?')}.")
    for f in failures:
        print(f"Round {f.get('round', '?')}: `{f.get('cmd', '?')}` gave no result ({f['error']}).")


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        sys.exit(__doc__)
    main(sys.argv[1:])
