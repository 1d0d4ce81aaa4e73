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

use crate::metrics::{CACHE_INVALIDATIONS_TOTAL, LINK_LOOKUPS_TOTAL};

/// A link as the redirect path needs it, with its `Location` prepared once.
pub(crate) struct CachedLink {
    pub(crate) link: LinkEvent,
    /// When this entry stops being trusted and Redis is asked again.
    expires: Instant,
    /// The destination with the link's UTM parameters, for requests that add no query.
    pub(crate) location: Option<HeaderValue>,
}

impl CachedLink {
    fn new(link: LinkEvent, ttl: Duration) -> Self {
        let location = HeaderValue::from_str(&crate::redirect::destination(&link, None)).ok();
        Self { link, expires: Instant::now() + ttl, location }
    }
}

/// Resolves short codes to links.
#[derive(Clone)]
pub(crate) struct LinkResolver {
    cache: Arc<Cache<String, Arc<CachedLink>>>,
    ttl: Duration,
    index: LinkIndex,
    memory_hits: metrics::Counter,
}

impl LinkResolver {
    pub(crate) fn new(index: LinkIndex, capacity: u64, ttl: Duration) -> Self {
        Self {
            cache: Arc::new(Cache::new(capacity as usize)),
            ttl,
            index,
            // The hot path's counter, registered once.
            memory_hits: counter!(LINK_LOOKUPS_TOTAL, "tier" => "memory", "result" => "hit"),
        }
    }

    /// The link of `code`: from memory, else from Redis (then cached). Unknown codes are not
    /// cached, so a link created on another edge works here at once.
    pub(crate) async fn resolve(&self, code: &str) -> Result<Option<Arc<CachedLink>>, SinkError> {
        if let Some(link) = self.cache.get(code).filter(|cached| cached.expires > Instant::now()) {
            self.memory_hits.increment(1);
            return Ok(Some(link));
        }
        counter!(LINK_LOOKUPS_TOTAL, "tier" => "memory", "result" => "miss").increment(1);
        let found = self.index.get(code).await?.map(|link| Arc::new(CachedLink::new(link, self.ttl)));
        let result = if found.is_some() { "hit" } else { "miss" };
        counter!(LINK_LOOKUPS_TOTAL, "tier" => "redis", "result" => result).increment(1);
        if let Some(link) = &found {
            self.cache.insert(code.to_string(), Arc::clone(link));
        }
        Ok(found)
    }

    /// Puts a link this edge just wrote into the cache.
    pub(crate) fn remember(&self, link: LinkEvent) {
        self.cache.insert(link.code.clone(), Arc::new(CachedLink::new(link, self.ttl)));
    }

    /// Drops `code` from the cache (its link changed).
    pub(crate) fn forget(&self, code: &str) {
        self.cache.remove(code);
    }

    pub(crate) fn index(&self) -> &LinkIndex {
        &self.index
    }

    /// Listens for link changes announced by any edge and drops them from this cache, for as
    /// long as the process runs. After a lost connection it empties the whole cache: changes
    /// may have been announced meanwhile.
    pub(crate) async fn follow_changes(self, client: redis::Client) {
        use futures::StreamExt;
        let channel = self.index.channel();
        loop {
            match client.get_async_pubsub().await {
                Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                    Ok(()) => {
                        self.cache.clear();
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
            self.cache.clear();
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}
