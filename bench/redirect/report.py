"""Summarises bench/redirect's wrk outputs: median RPS and p50/p99 per contender, and ratios."""
import re
import statistics
import sys
from pathlib import Path

work, rounds, captured = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
UNITS = {"us": 1.0, "ms": 1000.0, "s": 1_000_000.0}


def parse(path):
    text = path.read_text()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    total = int(re.search(r"(\d+) requests in", text).group(1))
    lat = {}
    for pct in ("50", "99"):
        value, unit = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M).groups()
        lat[pct] = float(value) * UNITS[unit]
    server0, server1, broker0, broker1 = map(float, re.search(r"^cpu (\S+) (\S+) (\S+) (\S+)$", text, re.M).groups())
    # CPU-µs per request of the server and of the broker during the run.
    return rps, lat["50"], lat["99"], total, (server1 - server0) * 1e6 / total, (broker1 - broker0) * 1e6 / total


rows = {}
for name in ("nginx", "nginx-1-worker", "runnel", "runnel-no-capture", "runnel-1-thread", "runnel-ndjson"):
    runs = [parse(work / f"{name}-{r}.txt") for r in range(1, rounds + 1)]
    rows[name] = (
        statistics.median(r[0] for r in runs),
        statistics.median(r[1] for r in runs),
        statistics.median(r[2] for r in runs),
        sum(r[3] for r in runs),
        statistics.median(r[4] for r in runs),
        statistics.median(r[5] for r in runs),
    )

base_rps, _, base_p99, *_ = rows["nginx"]
print()
print(
    f"{'contender':<20} {'req/s (median)':>15} {'p50 µs':>9} {'p99 µs':>9} {'rps vs nginx':>13} {'p99 vs nginx':>13}"
    f" {'server CPU-µs/req':>18} {'broker CPU-µs/req':>18}"
)
for name, (rps, p50, p99, _, server_cpu, broker_cpu) in rows.items():
    print(
        f"{name:<20} {rps:>15,.0f} {p50:>9.0f} {p99:>9.0f} {rps / base_rps:>12.2f}x {p99 / base_p99:>12.2f}x"
        f" {server_cpu:>18.1f} {broker_cpu:>18.1f}"
    )
one_rps, _, one_p99, *_ = rows["nginx-1-worker"]
print()
print(
    f"one worker each: runnel-1-thread {rows['runnel-1-thread'][0] / one_rps:.2f}x nginx-1-worker's req/s,"
    f" p99 {rows['runnel-1-thread'][2] / one_p99:.2f}x"
)
# Each round's ratio (contenders of one round ran back to back): how much the machine's noise
# moved the ratio within this run.
for name, base in (("runnel", "nginx"), ("runnel-1-thread", "nginx-1-worker")):
    ratios = [parse(work / f"{name}-{r}.txt")[0] / parse(work / f"{base}-{r}.txt")[0] for r in range(1, rounds + 1)]
    print(f"{name} / {base}, round by round: " + ", ".join(f"{x:.2f}x" for x in ratios))
print(f"target: runnel (capture on) >= 1.00x nginx req/s with p99 <= 2.00x nginx's")
print(f"click events captured by the capturing edge: {captured:,} for {rows['runnel'][3]:,} timed redirects (+ warm-up)")
