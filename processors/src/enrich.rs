//! Turns a click event into a `clicks` row: place, user agent, referrer, campaign, a visitor
//! id that changes every day, and the bot flag.

use std::borrow::Cow;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use events::{ClickLine, Utm};
use foldhash::HashMap;
use sha2::{Digest, Sha256};
use sinks::clickhouse::ClickRowRef;
use siphasher::sip::SipHasher13;

/// Substrings of user agents that crawlers, link-preview fetchers and HTTP libraries send,
/// beyond what the user-agent parser already knows as crawlers.
const BOT_MARKERS: &[&str] = &[
    "bot",
    "crawler",
    "spider",
    "slurp",
    "facebookexternalhit",
    "preview",
    "curl/",
    "wget/",
    "python-requests",
    "python-urllib",
    "go-http-client",
    "okhttp",
    "headless",
];

/// Distinct user agents (and referrers) remembered with their parse; a map starts over when full.
const PARSE_CACHE: usize = 50_000;

/// `make(key)`, remembered in `cache` (cleared when it holds [`PARSE_CACHE`] entries): real
/// traffic repeats a few agents and referrers, and parsing them is the costly part. Values hand
/// out shared text, so a hit costs a hash of the key and no allocation.
fn cached<V: Clone>(cache: &mut HashMap<String, V>, key: &str, make: impl FnOnce() -> V) -> V {
    if let Some(value) = cache.get(key) {
        return value.clone();
    }
    let value = make();
    if cache.len() >= PARSE_CACHE {
        cache.clear();
    }
    cache.insert(key.to_string(), value.clone());
    value
}

/// What a user agent says about the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Agent {
    pub(crate) browser: Arc<str>,
    pub(crate) os: Arc<str>,
    /// `desktop`, `mobile`, `tablet`, `bot` or `other`.
    pub(crate) device: &'static str,
    pub(crate) bot: bool,
}

/// Parses a user agent with the `woothee` parser (its crawler list included), adding the bot
/// markers above and telling tablets from phones.
pub(crate) fn parse_agent(parser: &woothee::parser::Parser, ua: &str) -> Agent {
    let lower = ua.to_ascii_lowercase();
    let parsed = parser.parse(ua);
    let (browser, os, category) = match &parsed {
        Some(r) => (r.name, r.os, r.category),
        None => ("UNKNOWN", "UNKNOWN", "UNKNOWN"),
    };
    let bot = ua.trim().is_empty() || category == "crawler" || BOT_MARKERS.iter().any(|m| lower.contains(m));
    let device = if bot {
        "bot"
    } else {
        match category {
            "pc" => "desktop",
            // woothee calls tablets smartphones: an iPad, or Android without the `Mobile`
            // token (Google's convention for tablets), is a tablet.
            "smartphone" if os == "iPad" || lower.contains("tablet") => "tablet",
            "smartphone" if os == "Android" && !ua.contains("Mobile") => "tablet",
            "smartphone" | "mobilephone" => "mobile",
            _ => "other",
        }
    };
    Agent { browser: Arc::from(browser), os: Arc::from(os), device, bot }
}

/// True when `host` is `domain` or one of its subdomains.
fn under(host: &str, domain: &str) -> bool {
    host.strip_suffix(domain).is_some_and(|rest| rest.is_empty() || rest.ends_with('.'))
}

const SEARCH_BRANDS: &[&str] =
    &["google", "bing", "duckduckgo", "yahoo", "baidu", "yandex", "ecosia", "qwant", "startpage", "naver", "seznam"];
const SOCIAL: &[&str] = &[
    "facebook.com",
    "fb.com",
    "fb.me",
    "t.co",
    "twitter.com",
    "x.com",
    "instagram.com",
    "linkedin.com",
    "lnkd.in",
    "reddit.com",
    "pinterest.com",
    "tiktok.com",
    "youtube.com",
    "youtu.be",
    "threads.net",
    "bsky.app",
    "mastodon.social",
    "vk.com",
    "weibo.com",
    "whatsapp.com",
    "wa.me",
    "t.me",
    "telegram.org",
    "snapchat.com",
    "tumblr.com",
    "quora.com",
    "news.ycombinator.com",
];
const WEBMAIL: &[&str] = &[
    "mail.google.com",
    "outlook.live.com",
    "outlook.office.com",
    "outlook.office365.com",
    "mail.yahoo.com",
    "mail.proton.me",
    "mail.aol.com",
    "mail.yandex.ru",
    "e.mail.ru",
    "mail.zoho.com",
    "icloud.com",
];
/// Android apps that send `android-app://{package}` referrers.
const APPS: &[(&str, &str)] = &[
    ("com.google.android.gm", "email"),
    ("com.microsoft.office.outlook", "email"),
    ("com.google.android.googlequicksearchbox", "search"),
    ("com.facebook.katana", "social"),
    ("com.facebook.orca", "social"),
    ("com.instagram.android", "social"),
    ("com.twitter.android", "social"),
    ("com.linkedin.android", "social"),
    ("com.reddit.frontpage", "social"),
    ("com.zhiliaoapp.musically", "social"),
    ("org.telegram.messenger", "social"),
    ("com.whatsapp", "social"),
];

/// The referrer's host (lower case, without `www.`) and its channel: `direct` (no referrer),
/// `search`, `social`, `email` or `other`.
pub(crate) fn referrer(referrer: &str) -> (String, &'static str) {
    let referrer = referrer.trim();
    if referrer.is_empty() {
        return (String::new(), "direct");
    }
    let Ok(url) = url::Url::parse(referrer) else {
        return (String::new(), "other");
    };
    let Some(host) = url.host_str() else {
        return (String::new(), "other");
    };
    let host = host.to_ascii_lowercase();
    let host = host.strip_prefix("www.").unwrap_or(&host).to_string();
    if url.scheme() == "android-app" {
        let channel = APPS.iter().find(|(app, _)| *app == host).map_or("other", |(_, c)| *c);
        return (host, channel);
    }
    let channel =
        if WEBMAIL.iter().any(|d| under(&host, d)) || host.starts_with("mail.") || host.starts_with("webmail.") {
            "email"
        } else if SOCIAL.iter().any(|d| under(&host, d)) {
            "social"
        } else if host.split('.').any(|label| SEARCH_BRANDS.contains(&label)) {
            "search"
        } else {
            "other"
        };
    (host, channel)
}

/// The channel a campaign medium names, for clicks whose referrer says nothing (mail clients
/// and apps often send none).
fn medium_channel(medium: &str) -> Option<&'static str> {
    match medium.to_ascii_lowercase().as_str() {
        "email" | "e-mail" | "newsletter" | "mail" => Some("email"),
        "social" | "social-media" | "social_media" | "sm" | "social-network" => Some("social"),
        "cpc" | "ppc" | "paid-search" | "paidsearch" | "organic" | "sem" => Some("search"),
        _ => None,
    }
}

/// The five campaign fields a request's query carries (source, medium, campaign, term,
/// content), empty where it has none.
pub(crate) type RequestCampaign = [Arc<str>; 5];

/// The five UTM fields a request's query carries (`utm_source`, `utm_medium`, `utm_campaign`,
/// `utm_term`, `utm_content`; the first non-empty value of each, at most 256 characters), empty
/// where it has none.
pub(crate) fn request_campaign(query: &str) -> RequestCampaign {
    let mut fields: [Option<String>; 5] = Default::default();
    if query.contains("utm_") {
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let slot = match key.as_ref() {
                "utm_source" => 0,
                "utm_medium" => 1,
                "utm_campaign" => 2,
                "utm_term" => 3,
                "utm_content" => 4,
                _ => continue,
            };
            if fields[slot].is_none() && !value.is_empty() {
                fields[slot] = Some(value.chars().take(256).collect());
            }
        }
    }
    fields.map(|field| Arc::from(field.unwrap_or_default()))
}

/// The campaign of a click: each field from the request's query, else from the link.
pub(crate) fn campaign<'a>(request: &'a RequestCampaign, link: Option<&'a Utm>) -> [&'a str; 5] {
    let link_fields = link.map(|u| [&u.source, &u.medium, &u.campaign, &u.term, &u.content]);
    std::array::from_fn(|i| match &*request[i] {
        "" => link_fields.and_then(|l| l[i].as_deref()).unwrap_or(""),
        field => field,
    })
}

/// Why a GeoIP database could not be used.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the GeoIP database {path}: {reason}")]
pub(crate) struct GeoError {
    path: String,
    reason: String,
}

/// Everything the processor adds to a click.
pub(crate) struct Enricher {
    parser: woothee::parser::Parser,
    agents: HashMap<String, Arc<Agent>>,
    /// Referrer → (host, channel).
    referrers: HashMap<String, (Arc<str>, &'static str)>,
    /// Query string → the campaign fields it carries.
    queries: HashMap<String, Arc<RequestCampaign>>,
    geo: Option<maxminddb::Reader<Vec<u8>>>,
    secret: [u8; 32],
    /// The day the visitor key below belongs to, and the key.
    day_key: Option<(u64, (u64, u64))>,
    store_ip: bool,
}

/// Opens a MaxMind-format database (GeoLite2/GeoIP2 City or Country, or compatible).
pub(crate) fn open_geoip(path: &Path) -> Result<maxminddb::Reader<Vec<u8>>, GeoError> {
    maxminddb::Reader::open_readfile(path)
        .map_err(|e| GeoError { path: path.display().to_string(), reason: e.to_string() })
}

impl Enricher {
    /// An enricher keyed by `secret` (visitor ids are a keyed hash; the key changes daily).
    pub(crate) fn new(secret: [u8; 32], geo: Option<maxminddb::Reader<Vec<u8>>>, store_ip: bool) -> Self {
        Self {
            parser: woothee::parser::Parser::new(),
            agents: HashMap::default(),
            referrers: HashMap::default(),
            queries: HashMap::default(),
            geo,
            secret,
            day_key: None,
            store_ip,
        }
    }

    /// Country and city from the GeoIP database, else the edge's CDN country.
    fn place<'a>(&self, ip: &str, cdn_country: &'a str) -> (Cow<'a, str>, Cow<'a, str>) {
        let found = self.geo.as_ref().and_then(|reader| {
            let ip = ip.parse::<IpAddr>().ok()?;
            let city = reader.lookup(ip).ok()?.decode::<maxminddb::geoip2::City<'_>>().ok()??;
            let country = city.country.iso_code.unwrap_or_default().to_string();
            let name = city.city.names.english.unwrap_or_default().to_string();
            Some((country, name))
        });
        match found {
            Some((country, city)) if !country.is_empty() => (Cow::Owned(country), Cow::Owned(city)),
            _ => (Cow::Borrowed(cdn_country), Cow::Borrowed("")),
        }
    }

    /// A visitor id: SipHash-1-3 of (IP as stored, user agent) under a key derived from the
    /// secret and the UTC day, so ids cannot be linked across days or reversed to an IP.
    pub(crate) fn visitor_id(&mut self, ts_ms: u64, ip: &str, ua: &str) -> u64 {
        let day = ts_ms / 86_400_000;
        let (k0, k1) = match self.day_key {
            Some((d, key)) if d == day => key,
            _ => {
                let digest = Sha256::new().chain_update(self.secret).chain_update(day.to_le_bytes()).finalize();
                let k0 = u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"));
                let k1 = u64::from_le_bytes(digest[8..16].try_into().expect("8 bytes"));
                self.day_key = Some((day, (k0, k1)));
                (k0, k1)
            }
        };
        use std::hash::Hasher;
        let mut hasher = SipHasher13::new_with_keys(k0, k1);
        hasher.write(ip.as_bytes());
        hasher.write_u8(0);
        hasher.write(ua.as_bytes());
        hasher.finish()
    }

    /// The row stored for `event`, read from `partition` at `offset`, owned.
    #[cfg(test)]
    pub(crate) fn click_row(
        &mut self,
        event: &ClickLine<'_>,
        partition: i32,
        offset: i64,
    ) -> sinks::clickhouse::ClickRow {
        self.with_click_row(event, partition, offset, |row| row.to_row())
    }

    /// `use_row` of the enriched row of `event`, borrowed from the event and the parse caches:
    /// the processor encodes it at once, so making a row copies no text.
    pub(crate) fn with_click_row<T>(
        &mut self,
        event: &ClickLine<'_>,
        partition: i32,
        offset: i64,
        use_row: impl FnOnce(&ClickRowRef<'_>) -> T,
    ) -> T {
        let agent = cached(&mut self.agents, &event.ua, || Arc::new(parse_agent(&self.parser, &event.ua)));
        let bot = agent.bot || event.method == "HEAD";
        let (country, city) = self.place(&event.ip, &event.country);
        let (referrer_host, referrer_channel) = cached(&mut self.referrers, &event.referrer, || {
            let (host, channel) = referrer(&event.referrer);
            (Arc::from(host), channel)
        });
        let request = cached(&mut self.queries, &event.q, || Arc::new(request_campaign(&event.q)));
        let [utm_source, utm_medium, utm_campaign, utm_term, utm_content] = campaign(&request, event.utm.as_ref());
        let channel = match referrer_channel {
            "search" | "social" | "email" => referrer_channel,
            _ => medium_channel(utm_medium).unwrap_or(referrer_channel),
        };
        let visitor_id = self.visitor_id(event.ts, &event.ip, &event.ua);
        use_row(&ClickRowRef {
            event_id: event.id,
            ts: (event.ts / 1000) as u32,
            link_id: event.link_id,
            code: &event.code,
            method: &event.method,
            user_agent: &event.ua,
            referrer: &event.referrer,
            accept_language: &event.lang,
            ip: if self.store_ip { &event.ip } else { "" },
            country: &country,
            city: &city,
            browser: &agent.browser,
            os: &agent.os,
            device: if bot { "bot" } else { agent.device },
            referrer_host: &referrer_host,
            channel,
            utm_source,
            utm_medium,
            utm_campaign,
            utm_term,
            utm_content,
            visitor_id,
            is_bot: u8::from(bot),
            kafka_partition: partition,
            kafka_offset: offset,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME_WINDOWS: &str =
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";
    const SAFARI_IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";
    const SAFARI_IPAD: &str = "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1";
    const ANDROID_PHONE: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36";
    const ANDROID_TABLET: &str =
        "Mozilla/5.0 (Linux; Android 13; SM-X200) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";
    const FIREFOX_LINUX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0";
    const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

    fn event<'a>(ua: &'a str, referrer: &'a str, q: &'a str) -> ClickLine<'a> {
        ClickLine {
            v: 1,
            id: 1,
            ts: 1_700_000_000_000,
            link_id: 7,
            code: "abc".into(),
            method: "GET".into(),
            ua: ua.into(),
            referrer: referrer.into(),
            lang: "en".into(),
            ip: "192.0.2.0".into(),
            country: "DE".into(),
            q: q.into(),
            utm: None,
        }
    }

    fn agent(ua: &str) -> (String, String, &'static str, bool) {
        let a = parse_agent(&woothee::parser::Parser::new(), ua);
        (a.browser.to_string(), a.os.to_string(), a.device, a.bot)
    }

    #[test]
    fn browsers_systems_and_devices_are_told_apart() {
        assert_eq!(agent(CHROME_WINDOWS), ("Chrome".into(), "Windows 10".into(), "desktop", false));
        assert_eq!(agent(FIREFOX_LINUX), ("Firefox".into(), "Linux".into(), "desktop", false));
        assert_eq!(agent(SAFARI_IPHONE), ("Safari".into(), "iPhone".into(), "mobile", false));
        assert_eq!(agent(SAFARI_IPAD), ("Safari".into(), "iPad".into(), "tablet", false));
        assert_eq!(agent(ANDROID_PHONE), ("Chrome".into(), "Android".into(), "mobile", false));
        assert_eq!(agent(ANDROID_TABLET), ("Chrome".into(), "Android".into(), "tablet", false));
    }

    #[test]
    fn crawlers_previews_libraries_and_empty_agents_are_bots() {
        for ua in [
            GOOGLEBOT,
            "facebookexternalhit/1.1",
            "Slackbot-LinkExpanding 1.0",
            "curl/8.4.0",
            "python-requests/2.31",
            "",
        ] {
            let (_, _, device, bot) = agent(ua);
            assert!(bot && device == "bot", "{ua:?} should be a bot");
        }
    }

    #[test]
    fn referrers_give_a_host_and_a_channel() {
        assert_eq!(referrer(""), (String::new(), "direct"));
        assert_eq!(referrer("https://www.google.de/search?q=x"), ("google.de".into(), "search"));
        assert_eq!(referrer("https://www.bing.com/"), ("bing.com".into(), "search"));
        assert_eq!(referrer("https://duckduckgo.com/"), ("duckduckgo.com".into(), "search"));
        assert_eq!(referrer("https://t.co/abc"), ("t.co".into(), "social"));
        assert_eq!(referrer("https://l.facebook.com/l.php?u=x"), ("l.facebook.com".into(), "social"));
        assert_eq!(referrer("https://old.reddit.com/r/rust"), ("old.reddit.com".into(), "social"));
        assert_eq!(referrer("https://mail.google.com/mail/u/0/"), ("mail.google.com".into(), "email"));
        assert_eq!(referrer("https://outlook.live.com/"), ("outlook.live.com".into(), "email"));
        assert_eq!(referrer("android-app://com.google.android.gm"), ("com.google.android.gm".into(), "email"));
        assert_eq!(referrer("https://blog.example.org/post"), ("blog.example.org".into(), "other"));
        // A look-alike is not the real thing.
        assert_eq!(referrer("https://notfacebook.com/"), ("notfacebook.com".into(), "other"));
        assert_eq!(referrer("not a url"), (String::new(), "other"));
    }

    #[test]
    fn campaign_fields_come_from_the_request_before_the_link() {
        let link = Utm { source: Some("link-src".into()), campaign: Some("spring".into()), ..Utm::default() };
        let request = request_campaign("utm_source=newsletter&utm_medium=email&x=1&utm_source=ignored&utm_term=");
        assert_eq!(campaign(&request, Some(&link)), ["newsletter", "email", "spring", "", ""]);
        assert_eq!(campaign(&request_campaign(""), None), [""; 5]);
        assert_eq!(campaign(&request_campaign("ref=home"), Some(&link)), ["link-src", "", "spring", "", ""]);
        assert_eq!(campaign(&request_campaign("utm_term=red%20shoes"), None)[3], "red shoes");
        let long = format!("utm_content={}", "é".repeat(300));
        assert_eq!(campaign(&request_campaign(&long), None)[4].chars().count(), 256);
    }

    #[test]
    fn a_click_row_carries_every_derived_field() {
        let mut enricher = Enricher::new([7; 32], None, false);
        let row = enricher.click_row(&event(SAFARI_IPHONE, "", "utm_medium=email&utm_source=news"), 3, 42);
        assert_eq!((&*row.browser, &*row.os, &*row.device), ("Safari", "iPhone", "mobile"));
        assert_eq!((&*row.channel, &*row.referrer_host), ("email", ""));
        assert_eq!((row.utm_source.as_str(), row.utm_medium.as_str()), ("news", "email"));
        assert_eq!((row.country.as_str(), row.city.as_str()), ("DE", ""), "the CDN country without a GeoIP database");
        assert_eq!(row.ip, "", "no IP leaves the processor unless configured");
        assert_eq!((row.kafka_partition, row.kafka_offset, row.is_bot), (3, 42, 0));

        let mut head = event(CHROME_WINDOWS, "https://www.google.com/", "");
        head.method = "HEAD".into();
        let row = enricher.click_row(&head, 0, 0);
        assert_eq!((row.is_bot, &*row.device, &*row.channel), (1, "bot", "search"));

        let mut keep = Enricher::new([7; 32], None, true);
        assert_eq!(keep.click_row(&event(CHROME_WINDOWS, "", ""), 0, 0).ip, "192.0.2.0");
    }

    #[test]
    fn visitor_ids_are_keyed_and_change_with_the_day() {
        let mut a = Enricher::new([1; 32], None, false);
        let mut b = Enricher::new([2; 32], None, false);
        let day = 1_700_000_000_000;
        assert_eq!(a.visitor_id(day, "192.0.2.0", "x"), a.visitor_id(day + 1000, "192.0.2.0", "x"));
        assert_ne!(a.visitor_id(day, "192.0.2.0", "x"), a.visitor_id(day, "192.0.3.0", "x"));
        assert_ne!(a.visitor_id(day, "192.0.2.0", "x"), a.visitor_id(day, "192.0.2.0", "y"));
        assert_ne!(a.visitor_id(day, "ab", "c"), a.visitor_id(day, "a", "bc"), "the separator keeps fields apart");
        assert_ne!(a.visitor_id(day, "192.0.2.0", "x"), b.visitor_id(day, "192.0.2.0", "x"), "another secret");
        assert_ne!(
            a.visitor_id(day, "192.0.2.0", "x"),
            a.visitor_id(day + 86_400_000, "192.0.2.0", "x"),
            "the next day"
        );
    }

    #[test]
    fn a_geoip_database_gives_country_and_city() {
        use maxminddb_writer::Database;
        use maxminddb_writer::paths::IpAddrWithMask;
        let mut db = Database::default();
        db.metadata.database_type = "GeoIP2-City".into();
        db.metadata.binary_format_major_version = 2;
        let berlin = db
            .insert_value(serde_json::json!({
                "country": {"iso_code": "DE", "names": {"en": "Germany"}},
                "city": {"names": {"en": "Berlin"}}
            }))
            .unwrap();
        db.insert_node("192.0.2.0/24".parse::<IpAddrWithMask>().unwrap(), berlin);
        let dir = std::env::temp_dir().join(format!("runnel-geo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("test.mmdb");
        db.write_to(std::fs::File::create(&path).unwrap()).unwrap();

        let enricher = Enricher::new([0; 32], Some(open_geoip(&path).unwrap()), false);
        assert_eq!(enricher.place("192.0.2.0", "FR"), ("DE".into(), "Berlin".into()));
        assert_eq!(enricher.place("198.51.100.0", "FR"), ("FR".into(), "".into()), "not in the database");
        assert_eq!(enricher.place("", ""), ("".into(), "".into()));
        let error = open_geoip(&dir.join("missing.mmdb")).unwrap_err().to_string();
        assert!(error.contains("missing.mmdb"), "{error}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
