//! Link lookup: a bounded in-process cache (`quick_cache`, S3-FIFO) whose entries are trusted
//! for a TTL, in front of the Redis link index.

use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderValue;
use events::LinkEvent;
use metrics::counter;
use quick_cache::sync::Cache;
use sinks::SinkError;
use sinks::redis::LinkIndex;
use std::time::Instant;

use crate::hot_metrics::HotCounter;
use crate::metrics::{CACHE_INVALIDATIONS_TOTAL, LINK_LOOKUPS_TOTAL};

/// A link as the redirect path needs it, with its `Location` prepared once.
pub(crate) struct CachedLink {
    pub(crate) link: LinkEvent,
    /// When this entry stops being trusted and Redis is asked again.
    expires: Instant,
    /// The cache generation it was read in; entries of older generations are stale.
    generation: u64,
    /// The destination with the link's UTM parameters, for requests that add no query.
    pub(crate) location: Option<HeaderValue>,
}

impl CachedLink {
    fn new(link: LinkEvent, ttl: Duration, generation: u64) -> Self {
        let location = HeaderValue::from_str(&crate::redirect::destination(&link, None)).ok();
        Self { link, expires: Instant::now() + ttl, generation, location }
    }
}

/// Resolves short codes to links.
#[derive(Clone)]
pub(crate) struct LinkResolver {
    cache: Arc<Cache<String, Arc<CachedLink>>>,
    ttl: Duration,
    /// Bumped when changes may have been missed (the change feed was lost): every entry read
    /// before is stale — asked for again, but still served while Redis does not answer.
    generation: Arc<std::sync::atomic::AtomicU64>,
    index: LinkIndex,
    memory_hits: HotCounter,
    /// After a failed read of the index, Redis is not asked again before this instant (ms on
    /// `clock`): redirects must not each wait out a dead Redis's reconnect attempts.
    index_down_until_ms: Arc<std::sync::atomic::AtomicU64>,
    clock: Instant,
}

/// How long the index is left alone after a failed read.
const INDEX_RETRY_AFTER: Duration = Duration::from_secs(1);

impl LinkResolver {
    pub(crate) fn new(index: LinkIndex, capacity: u64, ttl: Duration) -> Self {
        Self {
            cache: Arc::new(Cache::new(capacity as usize)),
            ttl,
            generation: Arc::default(),
            index_down_until_ms: Arc::default(),
            clock: Instant::now(),
            index,
            // The hot path's counter, registered once.
            memory_hits: HotCounter::new(counter!(LINK_LOOKUPS_TOTAL, "tier" => "memory", "result" => "hit")),
        }
    }

    /// The link of `code`: from memory, else from Redis (then cached). Unknown codes are not
    /// cached, so a link created on another edge works here at once.
    /// While Redis does not answer, an expired cache entry is used rather than failing the
    /// redirect (stale-if-error): a link that worked a moment ago keeps working.
    pub(crate) async fn resolve(&self, code: &str) -> Result<Option<Arc<CachedLink>>, SinkError> {
        let cached = self.cache.get(code);
        let generation = self.generation.load(std::sync::atomic::Ordering::Relaxed);
        if let Some(link) = cached.as_ref().filter(|c| c.expires > Instant::now() && c.generation == generation) {
            self.memory_hits.increment(1);
            return Ok(Some(Arc::clone(link)));
        }
        counter!(LINK_LOOKUPS_TOTAL, "tier" => "memory", "result" => "miss").increment(1);
        let now_ms = self.clock.elapsed().as_millis() as u64;
        let lookup = if now_ms < self.index_down_until_ms.load(std::sync::atomic::Ordering::Relaxed) {
            Err(SinkError::Invalid {
                variable: "RUNNEL_REDIS_URL",
                reason: "the link index failed a moment ago".into(),
            })
        } else {
            let lookup = self.index.get(code).await;
            if lookup.is_err() {
                let until = self.clock.elapsed() + INDEX_RETRY_AFTER;
                self.index_down_until_ms.store(until.as_millis() as u64, std::sync::atomic::Ordering::Relaxed);
            }
            lookup
        };
        let found = match lookup {
            Ok(found) => found.map(|link| Arc::new(CachedLink::new(link, self.ttl, generation))),
            Err(error) => match cached {
                Some(stale) => {
                    counter!(LINK_LOOKUPS_TOTAL, "tier" => "memory", "result" => "stale").increment(1);
                    tracing::debug!(%error, code, "link index unavailable; serving the cached link");
                    return Ok(Some(stale));
                }
                None => return Err(error),
            },
        };
        let result = if found.is_some() { "hit" } else { "miss" };
        counter!(LINK_LOOKUPS_TOTAL, "tier" => "redis", "result" => result).increment(1);
        if let Some(link) = &found {
            self.cache.insert(code.to_string(), Arc::clone(link));
        }
        Ok(found)
    }

    /// Puts a link this edge just wrote into the cache.
    pub(crate) fn remember(&self, link: LinkEvent) {
        let generation = self.generation.load(std::sync::atomic::Ordering::Relaxed);
        self.cache.insert(link.code.clone(), Arc::new(CachedLink::new(link, self.ttl, generation)));
    }

    /// Drops `code` from the cache (its link changed).
    pub(crate) fn forget(&self, code: &str) {
        self.cache.remove(code);
    }

    pub(crate) fn index(&self) -> &LinkIndex {
        &self.index
    }

    /// Listens for link changes announced by any edge and drops them from this cache, for as
    /// long as the process runs. After a lost connection every entry becomes stale: changes may
    /// have been announced meanwhile (stale entries still serve while Redis does not answer).
    pub(crate) async fn follow_changes(self, client: redis::Client) {
        use futures::StreamExt;
        let channel = self.index.channel();
        loop {
            match client.get_async_pubsub().await {
                Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                    Ok(()) => {
                        self.generation.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let mut messages = pubsub.on_message();
                        while let Some(message) = messages.next().await {
                            if let Ok(code) = message.get_payload::<String>() {
                                self.cache.remove(&code);
                                counter!(CACHE_INVALIDATIONS_TOTAL, "direction" => "received").increment(1);
                            }
                        }
                        tracing::warn!("link-change subscription ended; resubscribing");
                    }
                    Err(error) => tracing::warn!(%error, "cannot subscribe to link changes"),
                },
                Err(error) => tracing::warn!(%error, "cannot connect for link changes"),
            }
            self.generation.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}
