"""Baseline (c): the clicks pipeline as a team would write it in Python.

confluent-kafka consumer group → json.loads per line → a few derived fields → one INSERT per
50,000 rows (clickhouse-connect on a current server, clickhouse-driver on older ones) → commit.
No fences, no dead letters, no Redis: at-least-once only, so it does less than Runnel.

Usage: consumer.py EVENTS   (settings from RUNNEL_* variables, as Runnel's own)
"""
import json
import os
import sys
import zlib

from confluent_kafka import Consumer

EVENTS = int(sys.argv[1])
PREFIX = os.environ.get("RUNNEL_TOPIC_PREFIX", "runnel.")
DATABASE = os.environ.get("RUNNEL_CLICKHOUSE_DATABASE", "runnel")
URL = os.environ.get("RUNNEL_CLICKHOUSE_URL", "http://127.0.0.1:8123")
HOST = URL.split("://", 1)[-1].split(":")[0]
COLUMNS = ["event_id", "ts", "link_id", "code", "method", "user_agent", "referrer", "accept_language",
           "country", "visitor_id", "is_bot", "kafka_partition", "kafka_offset"]
BOTS = ("bot", "crawler", "spider", "facebookexternalhit", "preview", "curl/", "python-requests")


def inserter():
    try:
        import clickhouse_connect
        client = clickhouse_connect.get_client(host=HOST, port=int(URL.rsplit(":", 1)[-1]), database=DATABASE)
        print("baseline: clickhouse-connect", file=sys.stderr)
        return lambda rows: client.insert("clicks", rows, column_names=COLUMNS)
    except Exception as error:  # an old server: the native driver
        from clickhouse_driver import Client
        client = Client(HOST, port=int(os.environ.get("BENCH_CLICKHOUSE_NATIVE_PORT", "9000")), database=DATABASE)
        print(f"baseline: clickhouse-driver ({type(error).__name__})", file=sys.stderr)
        sql = f"INSERT INTO clicks ({', '.join(COLUMNS)}) VALUES"
        return lambda rows: client.execute(sql, rows)


def main():
    insert = inserter()
    consumer = Consumer({
        "bootstrap.servers": os.environ.get("RUNNEL_KAFKA_BROKERS", "127.0.0.1:9092"),
        "group.id": os.environ.get("RUNNEL_GROUP_PREFIX", "runnel-") + "clicks",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "fetch.wait.max.ms": int(os.environ.get("RUNNEL_KAFKA_FETCH_WAIT_MS", "100")),
    })
    consumer.subscribe([PREFIX + "clicks"])
    rows, seen = [], 0
    while seen < EVENTS:
        for message in consumer.consume(num_messages=500, timeout=1.0):
            if message.error():
                continue
            for line in message.value().splitlines():
                if not line.strip():
                    continue
                e = json.loads(line)
                ua = e.get("ua", "")
                bot = int(e["method"] == "HEAD" or not ua or any(b in ua.lower() for b in BOTS))
                visitor = zlib.crc32((e.get("ip", "") + "\0" + ua).encode())
                rows.append([e["id"], e["ts"] // 1000, e["link_id"], e["code"], e["method"], ua, e.get("ref", ""),
                             e.get("lang", ""), e.get("country", ""), visitor, bot, message.partition(),
                             message.offset()])
                seen += 1
        if len(rows) >= 50_000 or (seen >= EVENTS and rows):
            insert(rows)
            consumer.commit(asynchronous=False)
            rows = []
    consumer.close()
    print(f"baseline: {seen} events", file=sys.stderr)


if __name__ == "__main__":
    main()
