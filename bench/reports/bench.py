#!/usr/bin/env python3
"""bench/reports: every report through the edge's API against the same answer computed from the
raw tables, on a generated dataset; run by bench/reports/run.sh (which starts the edge).

Generates (once per database; --fresh to regenerate) CLICKS clicks over LINKS links and ORDERS
order events over DAYS days, inserted into the raw tables `clicks` and `orders` so the
materialized views fill as in production. Then, per report: p50/p99 of REPEAT calls through the
API, p50/p99 of the raw-table equivalent (ClickHouse HTTP, same machine), the speed-up
(raw p50 / API p50), and whether both gave the same rows.
"""
import argparse
import http.client
import json
import math
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request

CH = os.environ.get("RUNNEL_CLICKHOUSE_URL", "http://127.0.0.1:8123")


def ch(sql, db, fmt=None, timeout=3600):
    """Runs one statement over ClickHouse HTTP; returns its text output."""
    if fmt:
        sql = f"{sql} FORMAT {fmt}"
    url = f"{CH}/?database={db}"
    req = urllib.request.Request(url, data=sql.encode(), method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.read().decode()
    except urllib.error.HTTPError as e:
        sys.exit(f"clickhouse refused a statement: {e.read().decode()[:600]}\n{sql[:400]}")


def arr(values):
    return "[" + ", ".join("'" + v.replace("'", "\\'") + "'" for v in values) + "]"


UAS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/120.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (iPad; CPU OS 17_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0 Edg/120.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/537.36 Chrome/120.0 Safari/537.36",
    "Googlebot/2.1 (+http://www.google.com/bot.html)",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
]
BROWSERS = ["Chrome", "Safari", "Mobile Safari", "Chrome Mobile", "Firefox", "Mobile Safari", "Edge", "Chrome", "Googlebot", "Slackbot"]
OSES = ["Windows", "Mac OS X", "iOS", "Android", "Linux", "iOS", "Windows", "Mac OS X", "Other", "Other"]
DEVICES = ["desktop", "desktop", "mobile", "mobile", "desktop", "tablet", "desktop", "desktop", "bot", "bot"]
COUNTRIES = ["US", "DE", "GB", "FR", "JP", "BR", "IN", "CA", "NL", "ES", "IT", "PL", "SE", "AU", ""]
REFERRERS = [("", "direct"), ("www.google.com", "search"), ("t.co", "social"), ("www.facebook.com", "social"),
             ("mail.example.com", "email"), ("news.ycombinator.com", "other"), ("www.bing.com", "search"),
             ("l.instagram.com", "social")]


def rank_sql(hash_of):
    # Log-uniform over [0, links): rank r drawn with probability ~ 1/(r+1) (Zipf, s = 1).
    return f"toUInt64(floor(pow({{links}}, (intHash64({hash_of}) % 1000000) / 1000000))) - 1"


def link_sql(rank, top):
    ids = ", ".join(f"{rank} = {i}, toUInt64({lid})" for i, (_, lid) in enumerate(top))
    codes = ", ".join(f"{rank} = {i}, '{code}'" for i, (code, _) in enumerate(top))
    return (f"multiIf({ids}, toUInt64(1000000000 + {rank}))", f"multiIf({codes}, concat('b', toString({rank})))")


def generate(db, args, top, start, span):
    links = args.links
    h = lambda k: f"intHash64(number * 8 + {k})"  # noqa: E731
    link_id, code = link_sql("rank", top)
    chunk = 1_000_000
    t0 = time.monotonic()
    for lo in range(0, args.clicks, chunk):
        n = min(chunk, args.clicks - lo)
        ref = f"{h(5)} % {len(REFERRERS)} + 1"
        ua = f"{h(3)} % {len(UAS)} + 1"
        ch(f"""INSERT INTO clicks (event_id, ts, link_id, code, method, user_agent, referrer, accept_language, ip,
            country, city, browser, os, device, referrer_host, channel, utm_source, utm_medium, utm_campaign,
            utm_term, utm_content, visitor_id, is_bot, kafka_partition, kafka_offset)
        SELECT number AS event_id, toDateTime({start} + {h(1)} % {span}) AS ts, {link_id} AS link_id, {code} AS code,
            if({h(2)} % 50 = 0, 'HEAD', 'GET') AS method, {arr(UAS)}[{ua}] AS user_agent,
            if({arr([r for r, _ in REFERRERS])}[{ref}] = '', '', concat('https://', {arr([r for r, _ in REFERRERS])}[{ref}], '/')) AS referrer,
            'en-US,en;q=0.9' AS accept_language, '' AS ip,
            {arr(COUNTRIES)}[{h(4)} % {len(COUNTRIES)} + 1] AS country, '' AS city,
            {arr(BROWSERS)}[{ua}] AS browser, {arr(OSES)}[{ua}] AS os, {arr(DEVICES)}[{ua}] AS device,
            {arr([r for r, _ in REFERRERS])}[{ref}] AS referrer_host, {arr([c for _, c in REFERRERS])}[{ref}] AS channel,
            if({h(6)} % 5 = 0, 'newsletter', '') AS utm_source, if(utm_source = '', '', 'email') AS utm_medium,
            if(utm_source = '', '', 'spring') AS utm_campaign, '' AS utm_term, '' AS utm_content,
            {h(7)} % 3000000 AS visitor_id, toUInt8(device = 'bot' OR method = 'HEAD') AS is_bot,
            toInt32(rank % 12) AS kafka_partition, toInt64(number) AS kafka_offset
        FROM (SELECT number + {lo} AS number, {rank_sql('number + ' + str(lo)).format(links=links)} AS rank FROM numbers({n}))""", db)
        done = lo + n
        rate = done / (time.monotonic() - t0)
        print(f"  clicks {done:>12,} / {args.clicks:,}  ({rate:,.0f} rows/s)", flush=True)
    t0 = time.monotonic()
    o = lambda k: f"intHash64(order_no * 8 + {k})"  # noqa: E731
    olink_id, ocode = link_sql("orank", top)
    del olink_id
    for lo in range(0, args.orders, chunk):
        n = min(chunk, args.orders - lo)
        ch(f"""INSERT INTO orders (event_id, ts, received, order_id, order_code, customer_id, status, currency,
            subtotal, tax, shipping, discount, total, channel, click_id, link_code,
            item_product_id, item_sku, item_quantity, item_unit_price, kafka_partition, kafka_offset)
        SELECT concat('e', toString(number)) AS event_id,
            toDateTime({start} + {o(1)} % {span} + step * 600) AS ts, ts AS received,
            concat('o', toString(order_no)) AS order_id, concat('#', toString(100000 + order_no)) AS order_code,
            concat('c', toString({o(2)} % 150000)) AS customer_id,
            if(step = 0, 'created', multiIf({o(3)} % 20 = 0, 'cancelled', {o(3)} % 20 = 1, 'refunded', 'paid')) AS status,
            ['EUR', 'USD', 'GBP'][{o(4)} % 3 + 1] AS currency,
            total AS subtotal, toInt64(0) AS tax, toInt64(0) AS shipping, toInt64(0) AS discount,
            arraySum(arrayMap((q, p) -> toInt64(q) * p, item_quantity, item_unit_price)) AS total,
            'web' AS channel, toUInt64(0) AS click_id, if({o(5)} % 10 < 3, {ocode}, '') AS link_code,
            arrayMap(i -> concat('p', toString(intHash64(order_no * 16 + i) % 5000)), range(toUInt8(1 + {o(6)} % 3))) AS item_product_id,
            arrayMap(p -> concat('SKU-', p), item_product_id) AS item_sku,
            arrayMap(i -> toUInt32(1 + intHash64(order_no * 32 + i) % 3), range(toUInt8(1 + {o(6)} % 3))) AS item_quantity,
            arrayMap(i -> toInt64(500 + intHash64(order_no * 64 + i) % 20000), range(toUInt8(1 + {o(6)} % 3))) AS item_unit_price,
            toInt32(order_no % 12) AS kafka_partition, toInt64(number) AS kafka_offset
        FROM (SELECT number, intDiv(number, 2) AS order_no, number % 2 AS step,
                     {rank_sql('intDiv(number, 2) * 8 + 7').format(links=links)} AS orank
              FROM (SELECT number + {lo} AS number FROM numbers({n})))""", db)
        done = lo + n
        rate = done / (time.monotonic() - t0)
        print(f"  orders {done:>12,} / {args.orders:,}  ({rate:,.0f} rows/s)", flush=True)


def quantile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]


def norm(value):
    """A cell as comparable text: numbers rounded to 4 decimals."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{round(x, 4):.4f}"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--db", default="bench_reports")
    p.add_argument("--edge", required=True, help="host:port of the edge")
    p.add_argument("--key", required=True, help="API key with reports:read")
    p.add_argument("--top", required=True, help="code:link_id,… of the three most clicked links")
    p.add_argument("--clicks", type=int, default=10_000_000)
    p.add_argument("--links", type=int, default=100_000)
    p.add_argument("--orders", type=int, default=1_000_000)
    p.add_argument("--days", type=int, default=90)
    p.add_argument("--repeat", type=int, default=50)
    p.add_argument("--raw-repeat", type=int, default=7)
    p.add_argument("--generate", action="store_true", help="the database is fresh: fill it")
    p.add_argument("--json", help="write the rows here too")
    p.add_argument("--rollup", help="the runnel binary: run `runnel rollup` before timing, as the clicks processors do")
    args = p.parse_args()
    db = args.db
    top = [(c, int(i)) for c, i in (pair.split(":") for pair in args.top.split(","))]

    if args.generate:
        now = int(time.time())
        end = now - now % 3600 - 3600  # everything before the last full hour
        span = args.days * 86400
        print(f"generating {args.clicks:,} clicks over {args.links:,} links and {args.orders:,} order events "
              f"over {args.days} days into `{db}`", flush=True)
        t0 = time.monotonic()
        generate(db, args, top, end - span, span)
        print(f"  generated in {time.monotonic() - t0:.0f} s", flush=True)
    if args.rollup:
        # What the clicks processors do every few minutes: list each closed day's leading links.
        out = subprocess.run([args.rollup, "rollup"], check=True, capture_output=True, text=True).stdout.strip()
        print(f"rollup: {out}", flush=True)
    counts = ch("SELECT (SELECT count() FROM clicks), (SELECT count() FROM orders), (SELECT uniqExact(link_id) FROM clicks)", db).split()
    print(f"dataset: {int(counts[0]):,} clicks, {int(counts[1]):,} order events, {int(counts[2]):,} links clicked")
    parts = ch("SELECT table, count() FROM system.parts WHERE database = currentDatabase() AND active GROUP BY table ORDER BY table", db)
    print("active parts: " + ", ".join(f"{t} {n}" for t, n in (line.split("\t") for line in parts.split("\n") if line)))

    today = time.strftime("%Y-%m-%d", time.gmtime())

    def day_offset(days):
        return time.strftime("%Y-%m-%d", time.gmtime(time.time() - days * 86400))

    def rng(days):
        return (f"ts >= toDateTime('{day_offset(days - 1)} 00:00:00') "
                f"AND ts < toDateTime('{today} 00:00:00') + 86400")

    code0, id0 = top[0]
    cases = [
        ("link series, 30 days by day", f"/api/links/{code0}/stats?days=30",
         f"SELECT toDate(ts) AS d, count(), sum(1 - is_bot), uniqIf(visitor_id, is_bot = 0) FROM clicks "
         f"WHERE link_id = {id0} AND {rng(30)} GROUP BY d ORDER BY d", True),
        ("link series, 7 days by hour", f"/api/links/{code0}/stats?days=7&interval=hour",
         f"SELECT toStartOfHour(ts) AS h, count(), sum(1 - is_bot), uniqIf(visitor_id, is_bot = 0) FROM clicks "
         f"WHERE link_id = {id0} AND {rng(7)} GROUP BY h ORDER BY h", True),
        ("link by country, 30 days", f"/api/links/{code0}/stats/country?days=30",
         f"SELECT country, count() AS c, sum(1 - is_bot) AS hc FROM clicks WHERE link_id = {id0} AND {rng(30)} "
         f"GROUP BY country ORDER BY hc DESC, c DESC, country LIMIT 10", False),
        ("top links, 7 days", "/api/reports/top-links?days=7",
         f"SELECT link_id, code, count() AS c, sum(1 - is_bot) AS hc FROM clicks WHERE {rng(7)} "
         f"GROUP BY link_id, code ORDER BY hc DESC, c DESC, link_id LIMIT 10", False),
        ("top links, 90 days", "/api/reports/top-links?days=90",
         f"SELECT link_id, code, count() AS c, sum(1 - is_bot) AS hc FROM clicks WHERE {rng(90)} "
         f"GROUP BY link_id, code ORDER BY hc DESC, c DESC, link_id LIMIT 10", False),
        ("sales, 90 days by day", "/api/reports/sales?days=90",
         f"SELECT toDate(ts) AS d, status, currency, count() AS n, sum(total) AS revenue, "
         f"sum(toUInt64(arraySum(item_quantity))), if(n = 0, 0, revenue / n) FROM orders WHERE {rng(90)} "
         f"GROUP BY d, status, currency ORDER BY d, status, currency", True),
        ("top products, 90 days", "/api/reports/top-products?days=90",
         f"SELECT product_id, sku, currency, sum(toUInt64(quantity)) AS units, sum(quantity * unit_price) AS revenue "
         f"FROM orders ARRAY JOIN item_product_id AS product_id, item_sku AS sku, item_quantity AS quantity, "
         f"item_unit_price AS unit_price WHERE status = 'paid' AND {rng(90)} GROUP BY product_id, sku, currency "
         f"ORDER BY revenue DESC, units DESC, product_id LIMIT 10", False),
        ("customers, 90 days by day", "/api/reports/customers?days=90",
         f"SELECT d, toUInt64(countIf(first_d = d)), toUInt64(countIf(first_d < d)), sum(n) FROM ("
         f"SELECT toDate(ts) AS d, customer_id, count() AS n FROM orders WHERE status = 'paid' AND customer_id != '' "
         f"AND {rng(90)} GROUP BY d, customer_id) ANY LEFT JOIN (SELECT customer_id, toDate(min(ts)) AS first_d "
         f"FROM orders WHERE status = 'paid' AND customer_id != '' GROUP BY customer_id) USING customer_id "
         f"GROUP BY d ORDER BY d", True),
        ("conversions, 30 days", "/api/reports/conversions?days=30",
         f"SELECT code, clicks, human, currency, paid, revenue, if(human = 0, 0, paid / human) AS rate FROM ("
         f"SELECT link_code AS code, currency, count() AS paid, sum(total) AS revenue FROM orders "
         f"WHERE status = 'paid' AND link_code != '' AND {rng(30)} GROUP BY code, currency) ANY LEFT JOIN ("
         f"SELECT code, count() AS clicks, sum(1 - is_bot) AS human FROM clicks WHERE {rng(30)} GROUP BY code) "
         f"USING code ORDER BY paid DESC, revenue DESC, code, currency LIMIT 10", False),
        ("live (Redis)", "/api/reports/live", None, False),
    ]

    conn = http.client.HTTPConnection(args.edge, timeout=60)
    headers = {"Authorization": f"Bearer {args.key}"}

    def api(path):
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            sys.exit(f"GET {path}: {resp.status} {body[:300]!r}")
        return json.loads(body)

    def timed(fn, n):
        fn()  # warm up
        fn()
        samples = []
        for _ in range(n):
            t = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - t) * 1000)
        return quantile(samples, 0.5), quantile(samples, 0.99)

    results = []
    for name, path, raw_sql, series in cases:
        answer = api(path)
        api50, api99 = timed(lambda: api(path), args.repeat)
        row = {"report": name, "path": path, "api_p50_ms": api50, "api_p99_ms": api99}
        if raw_sql:
            raw50, raw99 = timed(lambda: ch(raw_sql, db), args.raw_repeat)
            raw_rows = [line.split("\t") for line in ch(raw_sql, db).split("\n") if line]
            columns = answer["columns"]
            rows = [[r[c] for c in columns] for r in answer["rows"]]
            if series:  # leave out the time column, and the zero rows the report fills in
                rows = [r[1:] for r in rows if any(norm(v) != "0.0000" for v in r[1:])]
                raw_rows = [r[1:] for r in raw_rows]
            same = [[norm(v) for v in r] for r in rows] == [[norm(v) for v in r] for r in raw_rows]
            row.update(raw_p50_ms=raw50, raw_p99_ms=raw99, speedup=raw50 / api50, same=same, rows=len(rows))
        results.append(row)
        print(f"  {name}: API p50 {api50:.1f} ms", flush=True)

    print()
    print(f"| report | API p50 ms | API p99 ms | raw p50 ms | raw p99 ms | speed-up | same rows |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        raw = (f"{r['raw_p50_ms']:.1f} | {r['raw_p99_ms']:.1f} | {r['speedup']:.0f}× | {'yes' if r['same'] else 'NO'} ({r['rows']})"
               if "raw_p50_ms" in r else "— | — | — | —")
        print(f"| {r['report']} | {r['api_p50_ms']:.1f} | {r['api_p99_ms']:.1f} | {raw} |")
    worst = max(r["api_p99_ms"] for r in results)
    slowest = min((r["speedup"] for r in results if "speedup" in r))
    print(f"\nworst API p99 {worst:.1f} ms (target ≤ 50); smallest speed-up {slowest:.0f}× (target ≥ 20)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    if not all(r.get("same", True) for r in results):
        sys.exit("some reports differ from their raw-table equivalent")


if __name__ == "__main__":
    main()
