//! Rate limits (`governor`), per API key and route class, and per client IP for redirects.
//! A refused request answers 429 with `Retry-After` and `RateLimit-*` headers.

use std::num::NonZeroU32;

use axum::http::StatusCode;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use metrics::counter;

use crate::metrics::RATE_LIMITED_TOTAL;
use crate::{ApiError, EdgeConfig};

/// A class of routes with its own limit.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Class {
    Links,
    Orders,
    Reports,
    Redirects,
}

impl Class {
    fn name(self) -> &'static str {
        match self {
            Self::Links => "links",
            Self::Orders => "orders",
            Self::Reports => "reports",
            Self::Redirects => "redirects",
        }
    }
}

type Limiter = RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

/// One limiter per class; `None` where the class is unlimited.
pub(crate) struct Limits {
    links: Option<Limiter>,
    orders: Option<Limiter>,
    reports: Option<Limiter>,
    redirects: Option<Limiter>,
}

fn limiter(per_minute: u32) -> Option<Limiter> {
    NonZeroU32::new(per_minute)
        .map(|n| RateLimiter::keyed(Quota::per_minute(n)).with_middleware::<StateInformationMiddleware>())
}

impl Limits {
    pub(crate) fn new(config: &EdgeConfig) -> Self {
        Self {
            links: limiter(config.rate_limit_links_per_min),
            orders: limiter(config.rate_limit_orders_per_min),
            reports: limiter(config.rate_limit_reports_per_min),
            redirects: limiter(config.rate_limit_redirects_per_min),
        }
    }

    /// Whether redirects are limited at all (so the hot path can skip the lookup).
    pub(crate) fn limits_redirects(&self) -> bool {
        self.redirects.is_some()
    }

    /// Admits one request of `class` from `who`, or refuses it with 429.
    pub(crate) fn check(&self, class: Class, who: &str) -> Result<(), ApiError> {
        let limiter = match class {
            Class::Links => &self.links,
            Class::Orders => &self.orders,
            Class::Reports => &self.reports,
            Class::Redirects => &self.redirects,
        };
        let Some(limiter) = limiter else { return Ok(()) };
        match limiter.check_key(&who.to_string()) {
            Ok(_) => Ok(()),
            Err(not_until) => {
                counter!(RATE_LIMITED_TOTAL, "class" => class.name()).increment(1);
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                let retry_after = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                let limit = not_until.quota().burst_size().get();
                Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    format!("more than {limit} {} requests per minute; retry in {retry_after} s", class.name()),
                )
                .with_rate_limit(limit, retry_after.max(1)))
            }
        }
    }
}
