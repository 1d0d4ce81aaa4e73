//! The link event: the state of one short link, as kept on the compacted links topic
//! (key: short code). The latest event per code is the link's current state.

use serde::{Deserialize, Serialize};

/// What happened to the link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkOp {
    /// The link was created.
    Create,
    /// The link's destination or settings changed.
    Update,
    /// The link was disabled; redirects answer 404.
    Disable,
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
}
