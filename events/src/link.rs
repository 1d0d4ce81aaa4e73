//! The link event: the state of one short link, as kept on the compacted links topic
//! (key: short code). The latest event per code is the link's current state; its `id`
//! (a Snowflake id, so time-ordered) orders versions.

use serde::{Deserialize, Serialize};

/// What happened to the link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkOp {
    /// The link was created.
    #[default]
    Create,
    /// The link's destination or settings changed.
    Update,
    /// The link was disabled; redirects answer 404.
    Disable,
}

/// UTM parameters a link adds to its destination.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Utm {
    /// `utm_source`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// `utm_medium`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub medium: Option<String>,
    /// `utm_campaign`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    /// `utm_term`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<String>,
    /// `utm_content`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

impl Utm {
    /// Whether no parameter is set.
    pub fn is_empty(&self) -> bool {
        self.pairs().next().is_none()
    }

    /// The set parameters as `(utm_name, value)`.
    pub fn pairs(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("utm_source", &self.source),
            ("utm_medium", &self.medium),
            ("utm_campaign", &self.campaign),
            ("utm_term", &self.term),
            ("utm_content", &self.content),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.as_deref().map(|v| (name, v)))
    }
}

fn default_redirect_status() -> u16 {
    302
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// One version of a link's state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkEvent {
    /// Schema version.
    pub v: u16,
    /// Event id (Snowflake); increases with every change, so it orders versions.
    pub id: u64,
    /// What happened.
    pub op: LinkOp,
    /// The link's numeric id, stable across versions.
    pub link_id: u64,
    /// The short code.
    pub code: String,
    /// Destination URL.
    pub url: String,
    /// When the link was created, milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// When this version was made, milliseconds since the Unix epoch.
    #[serde(default)]
    pub updated_ms: u64,
    /// HTTP status of the redirect: 301, 302, 307 or 308.
    #[serde(default = "default_redirect_status")]
    pub redirect_status: u16,
    /// After this instant (ms since the Unix epoch) the link answers 410, or redirects to
    /// `fallback_url` if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<u64>,
    /// Where an expired link redirects instead of answering 410.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_url: Option<String>,
    /// Whether the incoming query string is merged into the destination's.
    #[serde(default, skip_serializing_if = "is_false")]
    pub passthrough: bool,
    /// UTM parameters added to the destination.
    #[serde(default, skip_serializing_if = "Utm::is_empty")]
    pub utm: Utm,
    /// Free-form labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Disabled links answer 404.
    #[serde(default, skip_serializing_if = "is_false")]
    pub disabled: bool,
}

impl LinkEvent {
    /// A new link with default settings (302, no expiry, no passthrough).
    pub fn new(id: u64, code: impl Into<String>, url: impl Into<String>, now_ms: u64) -> Self {
        Self {
            v: crate::SCHEMA_VERSION,
            id,
            op: LinkOp::Create,
            link_id: id,
            code: code.into(),
            url: url.into(),
            created_ms: now_ms,
            updated_ms: now_ms,
            redirect_status: default_redirect_status(),
            expires_ms: None,
            fallback_url: None,
            passthrough: false,
            utm: Utm::default(),
            tags: Vec::new(),
            disabled: false,
        }
    }

    /// Whether the link has expired at `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_ms.is_some_and(|expires| now_ms >= expires)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_event_from_an_older_writer_gets_the_defaults() {
        let json = r#"{"v":1,"id":5,"op":"create","link_id":5,"code":"abc","url":"https://e.com","created_ms":1}"#;
        let link: LinkEvent = serde_json::from_str(json).unwrap();
        assert_eq!(link.redirect_status, 302);
        assert!(!link.passthrough && !link.disabled && link.utm.is_empty() && link.expires_ms.is_none());
    }

    #[test]
    fn defaults_are_left_out_of_the_encoding_and_set_fields_round_trip() {
        let mut link = LinkEvent::new(1, "abc", "https://e.com", 10);
        assert!(!serde_json::to_string(&link).unwrap().contains("utm"));
        link.utm.campaign = Some("spring".into());
        link.expires_ms = Some(99);
        link.tags = vec!["a".into()];
        let back: LinkEvent = serde_json::from_str(&serde_json::to_string(&link).unwrap()).unwrap();
        assert_eq!(back, link);
        assert!(back.is_expired(99) && !back.is_expired(98));
    }
}
