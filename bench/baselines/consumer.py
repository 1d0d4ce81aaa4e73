"""Baseline (c): the clicks pipeline as a team would write it in Python.

confluent-kafka consumer group → each message's events (a compact click batch decoded as
`events::click_batch` lays it out, or json.loads per NDJSON line) → a few derived fields → one INSERT per
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


def compact_events(payload):
    """The events of a compact click batch (events/src/click_batch.rs), as NDJSON's dicts."""
    table, at, ts, end = [], 4, 0, len(payload)

    def varint():
        nonlocal at
        value = shift = 0
        while True:
            byte = payload[at]
            at += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7

    def text():
        nonlocal at
        tag = varint()
        if tag == 0:
            return ""
        if tag & 1:
            return table[tag >> 1]
        start, at = at, at + (tag >> 1)
        value = payload[start:at].decode()
        table.append(value)
        return value

    while at < end:
        v, event_id, delta, link_id = varint(), varint(), varint(), varint()
        ts += (delta >> 1) ^ -(delta & 1)
        code, method, ua, ref, lang, ip, country, q, utm = [text() for _ in range(9)]
        yield {"v": v, "id": event_id, "ts": ts, "link_id": link_id, "code": code, "method": method, "ua": ua,
               "ref": ref, "lang": lang, "ip": ip, "country": country, "q": q}


def message_events(payload):
    if payload.startswith(b"\0RC"):
        return compact_events(payload)
    return (json.loads(line) for line in payload.splitlines() if line.strip())


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
            for e in message_events(message.value()):
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
