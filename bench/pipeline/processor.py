"""bench/pipeline/processor.py: `runnel process` alone, one binary against another.

Usage (through bench/pipeline/run.sh --processor): EVENTS ROUNDS BASELINE [CANDIDATE]

Preloads one clicks topic with EVENTS events, then runs each binary's
`runnel process --pipelines clicks` over all of it, alternating, ROUNDS times: every run in a
fresh consumer group, ClickHouse database and Redis key prefix, ending when ClickHouse holds
every event. Prints each binary's median CPU-µs per event (its own process: user + system),
events/s and peak RSS, and the candidate's ratios to the baseline. Use it to tell whether a
change to the processor made it cheaper: identical runs differ by 10-20% here, so compare
medians of one run, never figures across runs.
"""
import os
import statistics
import subprocess
import sys

import bench

EVENTS, ROUNDS = int(sys.argv[1]), int(sys.argv[2])
BINARIES = sys.argv[3:5]
bench.EVENTS = EVENTS


def main():
    for binary in BINARIES:
        if not os.access(binary, os.X_OK):
            sys.exit(f"processor.py: {binary} is not an executable")
    subprocess.run([BINARIES[0], "topics"], env=bench.ENV, check=True, stdout=subprocess.DEVNULL)
    bench.log(f"preloading {EVENTS:,} click events into {bench.RUN}.clicks")
    subprocess.run([f"{bench.TARGET}/preload", str(EVENTS)], env=bench.ENV, check=True)
    results = {b: [] for b in BINARIES}
    for round_ in range(ROUNDS):
        for i, binary in enumerate(BINARIES):
            name = f"{'baseline' if i == 0 else 'candidate'} round {round_ + 1}"
            row, db, prefix = bench.measure_processor(name, binary, f"p{round_}_{i}")
            counts = bench.ch("SELECT count(), uniqExact(event_id) FROM clicks", db).split()
            assert counts == [str(EVENTS), str(EVENTS)], f"{name} stored {counts}"
            bench.ch(f"DROP DATABASE IF EXISTS {db}")
            bench.drop_redis_keys(prefix)
            results[binary].append(row)

    print(f"\nbench/pipeline --processor: {EVENTS:,} click events, {ROUNDS} rounds, medians\n")
    print("| binary | CPU-µs per event | events/s | peak RSS MB |")
    print("|---|---|---|---|")
    medians = {}
    for binary, rows in results.items():
        cpu = statistics.median(r["cpu_us_per_event"] for r in rows)
        rate = statistics.median(r["events_per_s"] for r in rows)
        rss = statistics.median(r["peak_rss_mb"] for r in rows)
        medians[binary] = (cpu, rate)
        runs = ", ".join(f"{r['cpu_us_per_event']:.2f}" for r in rows)
        print(f"| {binary} | {cpu:.2f} ({runs}) | {rate:,.0f} | {rss:.0f} |")
    if len(BINARIES) == 2:
        (base_cpu, base_rate), (cand_cpu, cand_rate) = medians[BINARIES[0]], medians[BINARIES[1]]
        print(f"\ncandidate / baseline: CPU per event {cand_cpu / base_cpu:.2f}×, events/s {cand_rate / base_rate:.2f}×")


if __name__ == "__main__":
    main()
