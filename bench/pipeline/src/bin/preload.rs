//! Produces `EVENTS` realistic click events to `{RUNNEL_TOPIC_PREFIX}clicks` the way the edge
//! does: compact batches (or NDJSON with `RUNNEL_CLICK_ENCODING=ndjson`), up to `PER_MESSAGE`
//! events per message, one message per link partition,
//! keyed by link id, partitioned by CRC32 of the id. Prints progress to stderr.
//!
//! Usage: preload EVENTS [LINKS]

use std::time::{Duration, Instant};

use events::{ClickRef, Utm};
use rand::Rng;
use rand::seq::IndexedRandom;
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

const PER_MESSAGE: usize = 200;

const AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
    "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36 Edg/120.0",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
];
const REFERRERS: &[&str] = &[
    "",
    "",
    "",
    "https://www.google.com/",
    "https://t.co/x1",
    "https://l.facebook.com/l.php?u=x",
    "https://mail.google.com/mail/u/0/",
    "https://news.ycombinator.com/",
    "https://blog.example.org/post/1",
];
const QUERIES: &[&str] =
    &["", "", "", "utm_source=newsletter&utm_medium=email", "utm_source=twitter&utm_medium=social", "ref=home"];
const COUNTRIES: &[&str] = &["", "DE", "US", "FR", "GB", "NL", "BR", "IN", "JP"];
const LANGS: &[&str] = &["en-US,en;q=0.9", "de-DE,de;q=0.9,en;q=0.8", "fr-FR,fr;q=0.9", ""];

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let events: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(2_000_000);
    let links: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let brokers = std::env::var("RUNNEL_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let topic = format!("{}clicks", std::env::var("RUNNEL_TOPIC_PREFIX").unwrap_or_else(|_| "runnel.".into()));
    let partitions: usize = std::env::var("RUNNEL_CLICKS_PARTITIONS").ok().and_then(|p| p.parse().ok()).unwrap_or(12);
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("enable.idempotence", "false")
        .set("acks", "all")
        .create()?;

    let mut rng = rand::rng();
    let utm = Utm { campaign: Some("spring".into()), ..Utm::default() };
    let started = Instant::now();
    let base_ms = events::now_ms().saturating_sub(3_600_000);
    // Compact click batches, as the edge sends them by default; RUNNEL_CLICK_ENCODING=ndjson: lines.
    let compact = !std::env::var("RUNNEL_CLICK_ENCODING").is_ok_and(|e| e == "ndjson");
    let mut pending: Vec<Vec<u8>> = vec![Vec::new(); partitions];
    let mut encoders: Vec<events::click_batch::Encoder> =
        (0..partitions).map(|_| events::click_batch::Encoder::default()).collect();
    let mut counts = vec![0usize; partitions];
    let mut next_id = 1u64 << 40;
    let ip_text: Vec<String> =
        (0..5_000).map(|i| format!("{}.{}.{}.0", 10 + i % 200, i / 200 % 250, i % 250)).collect();
    let mut sent = 0usize;
    let send = |producer: &ThreadedProducer<DefaultProducerContext>, partition: usize, payload: &[u8]| loop {
        let record = BaseRecord::<str, [u8]>::to(&topic).partition(partition as i32).payload(payload).key("bench");
        match producer.send(record) {
            Ok(()) => break,
            Err((rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull), _)) => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err((e, _)) => panic!("produce failed: {e}"),
        }
    };
    for i in 0..events {
        // A skewed link popularity: the square of a uniform draw favours low ids.
        let u: f64 = rng.random();
        let link_id = 1 + (u * u * links as f64) as u64;
        let partition = (crc32fast::hash(link_id.to_string().as_bytes()) as usize) % partitions;
        next_id += 1;
        let code = format!("l{link_id}");
        let click = ClickRef {
            v: events::SCHEMA_VERSION,
            id: next_id,
            ts: base_ms + (i as u64 * 3_600_000 / events as u64),
            link_id,
            code: &code,
            method: if rng.random_ratio(1, 50) { "HEAD" } else { "GET" },
            ua: AGENTS.choose(&mut rng).expect("agents"),
            referrer: REFERRERS.choose(&mut rng).expect("referrers"),
            lang: LANGS.choose(&mut rng).expect("langs"),
            ip: &ip_text[rng.random_range(0..ip_text.len())],
            country: COUNTRIES.choose(&mut rng).expect("countries"),
            q: QUERIES.choose(&mut rng).expect("queries"),
            utm: link_id.is_multiple_of(5).then_some(&utm),
        };
        if compact {
            encoders[partition].push(&click);
        } else {
            click.encode_line(&mut pending[partition]);
        }
        counts[partition] += 1;
        if counts[partition] == PER_MESSAGE {
            if compact {
                send(&producer, partition, &encoders[partition].take());
            } else {
                send(&producer, partition, &pending[partition]);
                pending[partition].clear();
            }
            counts[partition] = 0;
        }
        sent += 1;
        if sent.is_multiple_of(200_000) {
            eprintln!(
                "preload: {sent} of {events} events ({:.0} events/s)",
                sent as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    for (partition, payload) in pending.iter().enumerate() {
        if !payload.is_empty() {
            send(&producer, partition, payload);
        }
    }
    for (partition, encoder) in encoders.iter_mut().enumerate() {
        if !encoder.is_empty() {
            send(&producer, partition, &encoder.take());
        }
    }
    producer.flush(Duration::from_secs(600))?;
    eprintln!("preload: {events} events in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
