//! API keys with scopes. Keys are configured as SHA-256 hashes (`RUNNEL_API_KEYS`), so the
//! configuration never holds a usable secret; a request presents its key as
//! `Authorization: Bearer <key>` or `X-Api-Key: <key>`.

use std::collections::HashMap;

use axum::http::{HeaderMap, StatusCode, header};
use sha2::{Digest, Sha256};

use crate::{ApiError, EdgeError};

/// What a key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Scope {
    /// Read links.
    LinksRead,
    /// Create, change and disable links.
    LinksWrite,
    /// Send order events.
    OrdersWrite,
    /// Read reports and stats.
    ReportsRead,
}

impl Scope {
    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "links:read" => Self::LinksRead,
            "links:write" => Self::LinksWrite,
            "orders:write" => Self::OrdersWrite,
            "reports:read" => Self::ReportsRead,
            _ => return None,
        })
    }

    /// The scope's name in configuration and errors.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::LinksRead => "links:read",
            Self::LinksWrite => "links:write",
            Self::OrdersWrite => "orders:write",
            Self::ReportsRead => "reports:read",
        }
    }
}

#[derive(Debug)]
struct Key {
    name: String,
    scopes: Vec<Scope>,
}

/// The configured keys, by hash.
#[derive(Debug, Default)]
pub(crate) struct ApiKeys {
    by_hash: HashMap<String, Key>,
}

/// Checks a `RUNNEL_API_KEYS` value without starting an edge.
pub fn validate_api_keys(text: &str) -> Result<(), EdgeError> {
    ApiKeys::parse(text).map(|_| ())
}

/// The hex SHA-256 of a key, as configured.
pub fn hash_key(key: &str) -> String {
    Sha256::digest(key.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

impl ApiKeys {
    /// Parses `name:sha256-hex:scope+scope` entries, comma separated.
    pub(crate) fn parse(text: &str) -> Result<Self, EdgeError> {
        let bad = |reason: String| EdgeError::Invalid { variable: "RUNNEL_API_KEYS", reason };
        let mut keys = Self::default();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let mut parts = entry.splitn(3, ':');
            let (Some(name), Some(hash), Some(scopes)) = (parts.next(), parts.next(), parts.next()) else {
                return Err(bad(format!("entry '{entry}' is not name:sha256-hex:scopes")));
            };
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad(format!("key '{name}': '{hash}' is not a hex SHA-256 (see `runnel api-key`)")));
            }
            let scopes = scopes
                .split('+')
                .map(|s| Scope::parse(s).ok_or_else(|| bad(format!("key '{name}': unknown scope '{s}'"))))
                .collect::<Result<Vec<_>, _>>()?;
            keys.by_hash.insert(hash.to_ascii_lowercase(), Key { name: name.to_string(), scopes });
        }
        Ok(keys)
    }

    /// Checks the request's key for `scope`; returns the key's name.
    pub(crate) fn authorize(&self, headers: &HeaderMap, scope: Scope) -> Result<&str, ApiError> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
            .map(str::trim);
        let Some(presented) = presented else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "an API key is required (Authorization: Bearer <key>)",
            ));
        };
        let key = self
            .by_hash
            .get(&hash_key(presented))
            .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "unknown API key"))?;
        if !key.scopes.contains(&scope) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("this key lacks the scope {}", scope.name()),
            ));
        }
        Ok(&key.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(key: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, format!("Bearer {key}").parse().unwrap());
        h
    }

    #[test]
    fn a_key_opens_only_its_scopes() {
        let keys = ApiKeys::parse(&format!(
            "shop:{}:orders:write, admin:{}:links:read+links:write",
            hash_key("s3cret"),
            hash_key("adm")
        ))
        .unwrap();
        assert_eq!(keys.authorize(&headers("s3cret"), Scope::OrdersWrite).unwrap(), "shop");
        assert_eq!(keys.authorize(&headers("s3cret"), Scope::LinksWrite).unwrap_err().status(), StatusCode::FORBIDDEN);
        assert_eq!(keys.authorize(&headers("nope"), Scope::LinksRead).unwrap_err().status(), StatusCode::UNAUTHORIZED);
        assert_eq!(keys.authorize(&HeaderMap::new(), Scope::LinksRead).unwrap_err().status(), StatusCode::UNAUTHORIZED);
        let mut x = HeaderMap::new();
        x.insert("x-api-key", "adm".parse().unwrap());
        assert_eq!(keys.authorize(&x, Scope::LinksRead).unwrap(), "admin");
    }

    #[test]
    fn bad_entries_are_refused_naming_the_variable() {
        for bad in ["justaname", "k:abc:links:read", &format!("k:{}:links:delete", hash_key("x"))] {
            let error = ApiKeys::parse(bad).unwrap_err().to_string();
            assert!(error.contains("RUNNEL_API_KEYS"), "{error}");
        }
    }
}
