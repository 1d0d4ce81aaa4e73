"""Baseline (c): the clicks pipeline as a team would write it in Python.

confluent-kafka consumer group → each message's events (a compact click batch decoded as
`events::click_batch` lays it out, or json.loads per NDJSON line) → the same derived columns as
Runnel's (browser, OS and device from `woothee`, referrer host and channel, campaign fields, a
keyed visitor id; each parse remembered, as Runnel's are) → one INSERT per 50,000 rows
(clickhouse-connect on a current server, clickhouse-driver on older ones) → commit. It stores
the rows Runnel stores, so ClickHouse does the same work for both (bench.py compares the two
tables' breakdowns). No fences, no dead letters, no Redis, no GeoIP: at-least-once only, so it
does less than Runnel.

Usage: consumer.py EVENTS   (settings from RUNNEL_* variables, as Runnel's own)
"""
import hashlib
import json
import os
import sys
from functools import lru_cache
from urllib.parse import parse_qsl, urlsplit

import woothee
from confluent_kafka import Consumer

EVENTS = int(sys.argv[1])
PREFIX = os.environ.get("RUNNEL_TOPIC_PREFIX", "runnel.")
DATABASE = os.environ.get("RUNNEL_CLICKHOUSE_DATABASE", "runnel")
URL = os.environ.get("RUNNEL_CLICKHOUSE_URL", "http://127.0.0.1:8123")
HOST = URL.split("://", 1)[-1].split(":")[0]
COLUMNS = ["event_id", "ts", "link_id", "code", "method", "user_agent", "referrer", "accept_language",
           "country", "browser", "os", "device", "referrer_host", "channel", "utm_source", "utm_medium",
           "utm_campaign", "utm_term", "utm_content", "visitor_id", "is_bot", "kafka_partition", "kafka_offset"]
# processors/src/enrich.rs, ported.
BOTS = ("bot", "crawler", "spider", "slurp", "facebookexternalhit", "preview", "curl/", "wget/", "python-requests",
        "python-urllib", "go-http-client", "okhttp", "headless")
SEARCH = {"google", "bing", "duckduckgo", "yahoo", "baidu", "yandex", "ecosia", "qwant", "startpage", "naver", "seznam"}
SOCIAL = ("facebook.com", "fb.com", "fb.me", "t.co", "twitter.com", "x.com", "instagram.com", "linkedin.com", "lnkd.in",
          "reddit.com", "pinterest.com", "tiktok.com", "youtube.com", "youtu.be", "threads.net", "bsky.app",
          "mastodon.social", "vk.com", "weibo.com", "whatsapp.com", "wa.me", "t.me", "telegram.org", "snapchat.com",
          "tumblr.com", "quora.com", "news.ycombinator.com")
WEBMAIL = ("mail.google.com", "outlook.live.com", "outlook.office.com", "outlook.office365.com", "mail.yahoo.com",
           "mail.proton.me", "mail.aol.com", "mail.yandex.ru", "e.mail.ru", "mail.zoho.com", "icloud.com")
MEDIUMS = {"email": "email", "e-mail": "email", "newsletter": "email", "mail": "email", "social": "social",
           "social-media": "social", "social_media": "social", "sm": "social", "social-network": "social",
           "cpc": "search", "ppc": "search", "paid-search": "search", "paidsearch": "search", "organic": "search",
           "sem": "search"}
UTM = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
SECRET = os.environ.get("RUNNEL_VISITOR_SECRET", "bench").encode()


@lru_cache(maxsize=50_000)
def agent(ua):
    """(browser, os, device, bot) of a user agent."""
    lower = ua.lower()
    parsed = woothee.parse(ua)
    browser, system, category = parsed["name"], parsed["os"], parsed["category"]
    bot = not ua.strip() or category == "crawler" or any(b in lower for b in BOTS)
    if bot:
        device = "bot"
    elif category == "pc":
        device = "desktop"
    elif category == "smartphone" and (system == "iPad" or "tablet" in lower or
                                         (system == "Android" and "Mobile" not in ua)):
        device = "tablet"
    elif category in ("smartphone", "mobilephone"):
        device = "mobile"
    else:
        device = "other"
    return browser, system, device, bot


def under(host, domain):
    return host == domain or host.endswith("." + domain)


@lru_cache(maxsize=50_000)
def referrer(ref):
    """(host, channel) of a referrer."""
    ref = ref.strip()
    if not ref:
        return "", "direct"
    try:
        host = (urlsplit(ref).hostname or "").lower()
    except ValueError:
        return "", "other"
    if not host:
        return "", "other"
    host = host.removeprefix("www.")
    if any(under(host, d) for d in WEBMAIL) or host.startswith(("mail.", "webmail.")):
        return host, "email"
    if any(under(host, d) for d in SOCIAL):
        return host, "social"
    if any(label in SEARCH for label in host.split(".")):
        return host, "search"
    return host, "other"


@lru_cache(maxsize=50_000)
def request_campaign(query):
    fields = {}
    if "utm_" in query:
        for key, value in parse_qsl(query):
            if key in UTM and value and key not in fields:
                fields[key] = value[:256]
    return tuple(fields.get(key, "") for key in UTM)


@lru_cache(maxsize=50_000)
def link_campaign(utm_json):
    fields = json.loads(utm_json) if utm_json else {}
    return tuple(fields.get(key.removeprefix("utm_")) or "" for key in UTM)


@lru_cache(maxsize=50_000)
def source(ref, query, utm_json):
    """(referrer host, channel, the five campaign fields) of a click."""
    host, channel = referrer(ref)
    campaign = tuple(a or b for a, b in zip(request_campaign(query), link_campaign(utm_json)))
    if channel not in ("search", "social", "email"):
        channel = MEDIUMS.get(campaign[1].lower(), channel)
    return host, channel, campaign


@lru_cache(maxsize=8)
def day_key(day):
    return hashlib.sha256(SECRET + day.to_bytes(8, "little")).digest()[:16]


def visitor_id(ts_ms, ip, ua):
    digest = hashlib.blake2b(ip.encode() + b"\0" + ua.encode(), key=day_key(ts_ms // 86_400_000), digest_size=8)
    return int.from_bytes(digest.digest(), "little")


def compact_events(payload):
    """The events of a compact click batch, version 1 or 2 (events/src/click_batch.rs), as NDJSON's dicts."""
    version = payload[3] - ord("0")
    table, links, at, event_id, ts, end = [], [], 4, 0, 0, len(payload)

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

    def delta():
        value = varint()
        return (value >> 1) ^ -(value & 1)

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
        v = varint()
        if version == 2:
            event_id += delta()
            ts += delta()
            tag = varint()
            if tag == 0:
                links.append((varint(), text()))
            link_id, code = links[tag - 1] if tag else links[-1]
        else:
            event_id = varint()
            ts += delta()
            link_id, code = varint(), text()
        method, ua, ref, lang, ip, country, q, utm = [text() for _ in range(8)]
        yield {"v": v, "id": event_id, "ts": ts, "link_id": link_id, "code": code, "method": method, "ua": ua,
               "ref": ref, "lang": lang, "ip": ip, "country": country, "q": q, "utm": utm}


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
                ua, ref = e.get("ua", ""), e.get("ref", "")
                browser, system, device, bot = agent(ua)
                bot = bot or e["method"] == "HEAD"
                utm = e.get("utm") or ""
                host, channel, campaign = source(ref, e.get("q", ""), utm if isinstance(utm, str) else json.dumps(utm))
                rows.append([e["id"], e["ts"] // 1000, e["link_id"], e["code"], e["method"], ua, ref,
                             e.get("lang", ""), e.get("country", ""), browser, system, "bot" if bot else device,
                             host, channel, *campaign, visitor_id(e["ts"], e.get("ip", ""), ua), int(bot),
                             message.partition(), message.offset()])
                seen += 1
        if len(rows) >= 50_000 or (seen >= EVENTS and rows):
            insert(rows)
            consumer.commit(asynchronous=False)
            rows = []
    consumer.close()
    print(f"baseline: {seen} events", file=sys.stderr)


if __name__ == "__main__":
    main()
