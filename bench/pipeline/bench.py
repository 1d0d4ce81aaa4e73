"""bench/pipeline: one run, four contenders, on the same preloaded clicks topic.

(a) source limit: a bare rdkafka consumer (bench/pipeline drain) reading every event;
(b) sink limit:   clickhouse-client inserting the same rows (exported from (d)) from a file
                  into a fresh `clicks` table with its views (written at once, as (d) has them);
(c) baseline:     a Python consumer (confluent-kafka → clickhouse-connect/-driver) storing the
                  same derived columns (checked: both tables' breakdowns must agree);
(d) Runnel:       `runnel process --pipelines clicks` (ClickHouse + Redis, fenced).

For each: events/s (events ÷ wall seconds from start to the last event stored or read),
CPU-seconds per million events and peak RSS of its process, and the CPU the ClickHouse server
and the broker spent meanwhile. Run by bench/pipeline/run.sh.
"""
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EVENTS = int(sys.argv[1]) if len(sys.argv) > 1 else 2_000_000
TARGET = os.environ["CARGO_TARGET_DIR"] + "/release"
CH_URL = os.environ.get("RUNNEL_CLICKHOUSE_URL", "http://127.0.0.1:8123")
RUN = f"bench{int(time.time())}"
# `runnel process` joins its group as a dynamic member, as the Python baseline does: tansu 0.6
# holds each JoinGroup and SyncGroup of a static member (`group.instance.id`, the processor's
# default) for 3 s (PAUSE_MS in tansu-broker's group administrator), 6 s per run that the Python
# consumer does not wait.
ENV = dict(os.environ, RUNNEL_PROCESSOR_INSTANCE_ID="none",
           RUNNEL_TOPIC_PREFIX=f"{RUN}.", RUNNEL_GROUP_PREFIX=f"{RUN}-", RUNNEL_REDIS_PREFIX=f"{RUN}:",
           RUNNEL_KAFKA_FETCH_WAIT_MS=os.environ.get("RUNNEL_KAFKA_FETCH_WAIT_MS", "100"),
           RUNNEL_PROCESS_METRICS_ADDR="127.0.0.1:0", RUST_LOG="warn")


def log(text):
    print(f"[bench] {text}", file=sys.stderr, flush=True)


def ch(sql, database=None):
    url = CH_URL + "/?" + ("database=" + database + "&" if database else "")
    request = urllib.request.Request(url, data=sql.encode(), method="POST")
    with urllib.request.urlopen(request, timeout=600) as response:
        return response.read().decode().strip()


def pid_of(path):
    try:
        return int(open(os.path.join(ROOT, path)).read().strip())
    except (OSError, ValueError):
        return None


# run.sh starts a broker of the run's own and names its pid; else the local stack's.
BROKER_PID = int(os.environ["RUNNEL_BENCH_BROKER_PID"]) if os.environ.get("RUNNEL_BENCH_BROKER_PID") else None
SERVERS = {"clickhouse": pid_of(".stack/clickhouse/server.pid"), "broker": BROKER_PID or pid_of(".stack/kafka/tansu.pid")}


def cpu_of(pid):
    """CPU seconds a running process has used (utime + stime)."""
    if not pid:
        return 0.0
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


# What `runnel process` logs after a minute out of its consumer group. tansu 0.6 does not let a
# consumer whose session expired back in (docs/reliability.md): such a run would never end.
OUT_OF_GROUP = b"the consumer is out of its group"


class Stalled(Exception):
    """The run's consumer fell out of its group and cannot get back in; run it again afresh."""


def measure(name, argv, done=None, env=ENV, stdin=None):
    """Runs argv; the run ends when it exits, or when done() says so (then it gets SIGTERM).
    Returns a result row; raises Stalled when a `runnel process` run is stuck out of its
    consumer group."""
    servers = {k: cpu_of(p) for k, p in SERVERS.items()}
    started = time.monotonic()
    # A file, not a pipe: a pipe read only at the end fills up and blocks a chatty process.
    stderr = tempfile.TemporaryFile() if done else None
    process = subprocess.Popen(argv, env=env, stdin=stdin, stderr=stderr)
    if done:
        checked = time.monotonic()
        while not done():
            if process.poll() is not None:
                stderr.seek(0)
                sys.exit(f"{name} exited early: {stderr.read().decode(errors='replace')[-2000:]}")
            if time.monotonic() - checked > 5:
                checked = time.monotonic()
                stderr.seek(0)
                if OUT_OF_GROUP in stderr.read():
                    process.kill()
                    process.wait()
                    log(f"{name}: its consumer fell out of the group and the broker does not let it back "
                        "(tansu 0.6, docs/reliability.md); running it again in a fresh group and database")
                    raise Stalled(name)
            time.sleep(0.1)
        wall = time.monotonic() - started
        process.send_signal(signal.SIGTERM)
        _, status, usage = os.wait4(process.pid, 0)
    else:
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.monotonic() - started
        if status != 0:
            sys.exit(f"{name} failed with status {status}")
    server_cpu = {k: cpu_of(p) - servers[k] for k, p in SERVERS.items()}
    cpu = usage.ru_utime + usage.ru_stime
    row = {"name": name, "events_per_s": EVENTS / wall, "wall_s": wall, "cpu_s_per_m": cpu / EVENTS * 1e6,
           "cpu_us_per_event": cpu / EVENTS * 1e6, "peak_rss_mb": usage.ru_maxrss / 1024,
           "clickhouse_cpu_s": server_cpu["clickhouse"], "broker_cpu_s": server_cpu["broker"]}
    log(f"{name}: {row['events_per_s']:,.0f} events/s, {cpu:.1f} CPU-s, {row['peak_rss_mb']:.0f} MB peak RSS")
    return row


def measure_processor(name, binary, tag):
    """`binary process --pipelines clicks` until ClickHouse holds every event, in a database,
    consumer group and Redis prefix of its own (named by `tag`). A run stuck out of its group is
    dropped and made again afresh, at most three times. Returns the row, the database and the
    Redis prefix."""
    for attempt in range(3):
        db, prefix = f"{RUN}_{tag}_{attempt}", f"{RUN}:{tag}:{attempt}:"
        env = dict(ENV, RUNNEL_CLICKHOUSE_DATABASE=db, RUNNEL_GROUP_PREFIX=f"{RUN}-{tag}-{attempt}-",
                   RUNNEL_REDIS_PREFIX=prefix)
        subprocess.run([binary, "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
        try:
            return measure(name, [binary, "process", "--pipelines", "clicks"], done=stored(db), env=env), db, prefix
        except Stalled:
            ch(f"DROP DATABASE IF EXISTS {db}")
            drop_redis_keys(prefix)
    sys.exit(f"{name}: out of its consumer group three times; restart the broker")


def drop_redis_keys(prefix):
    """Removes the keys a run wrote under `prefix` (millions of them pile up otherwise, and a
    test's `KEYS` on the same server then times out)."""
    url = os.environ.get("RUNNEL_REDIS_URL", "redis://127.0.0.1:6379")
    keys = subprocess.run(["redis-cli", "-u", url, "--scan", "--pattern", prefix + "*"], check=True,
                          capture_output=True, text=True).stdout.split()
    for start in range(0, len(keys), 10_000):
        subprocess.run(["redis-cli", "-u", url, "UNLINK", *keys[start:start + 10_000]], check=True,
                       stdout=subprocess.DEVNULL)


def migrate(database):
    subprocess.run([f"{TARGET}/runnel", "migrate"], env=dict(ENV, RUNNEL_CLICKHOUSE_DATABASE=database),
                   check=True, stdout=subprocess.DEVNULL)


# The derived columns both consumers fill, and how many rows have each combination.
DERIVED = "browser, os, device, referrer_host, channel, utm_source, utm_medium, utm_campaign, utm_term, utm_content, is_bot"
BREAKDOWN = f"SELECT {DERIVED}, count() FROM clicks GROUP BY {DERIVED} ORDER BY {DERIVED}"


def stored(database):
    return lambda: int(ch("SELECT count() FROM clicks", database) or 0) >= EVENTS


def main():
    subprocess.run([f"{TARGET}/runnel", "topics"], env=ENV, check=True, stdout=subprocess.DEVNULL)
    log(f"preloading {EVENTS:,} click events into {RUN}.clicks")
    subprocess.run([f"{TARGET}/preload", str(EVENTS)], env=ENV, check=True)
    rows = []

    rows.append(measure("(a) bare rdkafka consumer", [f"{TARGET}/drain", str(EVENTS)]))

    row, db_d, _ = measure_processor("(d) runnel process", f"{TARGET}/runnel", "runnel")
    rows.append(row)

    export = os.path.join(ROOT, ".stack", f"{RUN}.native")
    with open(export, "wb") as out:
        subprocess.run(["clickhouse-client", "--database", db_d, "--query", "SELECT * FROM clicks FORMAT Native"],
                       stdout=out, check=True)
    db_b = f"{RUN}_client"
    migrate(db_b)
    with open(export, "rb") as rows_file:
        rows.append(measure("(b) clickhouse-client from a file",
                            # The views written at once, as `runnel process` has them written
                            # (RUNNEL_CLICKHOUSE_PARALLEL_VIEWS).
                            ["clickhouse-client", "--database", db_b, "--parallel_view_processing=1",
                             "--query", "INSERT INTO clicks FORMAT Native"],
                            stdin=rows_file))
    os.remove(export)
    assert int(ch("SELECT count() FROM clicks", db_b)) == EVENTS

    db_c = f"{RUN}_python"
    migrate(db_c)
    rows.append(measure("(c) Python consumer", [sys.executable, os.path.join(ROOT, "bench/baselines/consumer.py"),
                                                 str(EVENTS)],
                        env=dict(ENV, RUNNEL_CLICKHOUSE_DATABASE=db_c, RUNNEL_GROUP_PREFIX=f"{RUN}-python-")))

    # The baseline did the same job: it stored the derived columns Runnel stored.
    ours, theirs = ch(BREAKDOWN, db_d).splitlines(), ch(BREAKDOWN, db_c).splitlines()
    if ours != theirs:
        only = sorted(set(ours) ^ set(theirs))
        sys.exit("the Python baseline's rows differ from Runnel's (browser, os, device, referrer_host, channel, "
                 "utm_*, is_bot, count):\n" + "\n".join(("runnel: " if line in ours else "python: ") + line
                                                          for line in only[:40]))
    # Runnel stored each event once, and the views agree.
    counts = ch(f"SELECT count(), uniqExact(event_id) FROM clicks", db_d).split()
    view = ch("SELECT countMerge(clicks) FROM clicks_daily_by_link", db_d)
    assert counts == [str(EVENTS), str(EVENTS)] and view == str(EVENTS), (counts, view)
    for db in (db_d, db_b, db_c):
        ch(f"DROP DATABASE IF EXISTS {db}")
    drop_redis_keys(ENV["RUNNEL_REDIS_PREFIX"])

    by = {r["name"][:3]: r for r in rows}
    limit = min(by["(a)"]["events_per_s"], by["(b)"]["events_per_s"])
    print(f"\nbench/pipeline: {EVENTS:,} click events, topic {RUN}.clicks (12 partitions), "
          f"fetch.wait.max.ms={ENV['RUNNEL_KAFKA_FETCH_WAIT_MS']}\n")
    print(f"| contender | events/s | CPU-s per M events | peak RSS MB | ClickHouse server CPU-s | broker CPU-s |")
    print("|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: r["name"]):
        print(f"| {r['name']} | {r['events_per_s']:,.0f} | {r['cpu_s_per_m']:.2f} | {r['peak_rss_mb']:.0f} | "
              f"{r['clickhouse_cpu_s']:.1f} | {r['broker_cpu_s']:.1f} |")
    d = by["(d)"]
    print(f"\nRunnel vs min(source, sink): {d['events_per_s'] / limit:.2f}× (target ≥ 0.50×)")
    print(f"Runnel vs Python baseline:   {d['events_per_s'] / by['(c)']['events_per_s']:.2f}× (target ≥ 3×)")
    print(f"Runnel CPU per event:        {d['cpu_us_per_event']:.2f} µs (target ≤ 2 µs)")
    json.dump(rows, open(os.path.join(ROOT, ".stack", "bench-pipeline.json"), "w"), indent=1)


if __name__ == "__main__":
    main()
