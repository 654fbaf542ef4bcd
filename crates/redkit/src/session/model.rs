//! What a session is and how it is stored: `<version>|<json>`, the version
//! read by the save-if-version script without parsing the JSON.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::SessionId;
use crate::error::{Error, Result};

/// Largest accepted encoded session, in bytes.
const MAX_SESSION_BYTES: usize = 1024 * 1024;
/// Longest accepted user id, in bytes.
const MAX_USER_ID_LEN: usize = 256;

/// A session as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// The id (a secret: `Debug` hides it).
    pub id: SessionId,
    /// The user it belongs to.
    pub user_id: String,
    /// Application data.
    pub data: Map<String, Value>,
    /// Creation time, ms since the UNIX epoch.
    pub created_at_ms: u64,
    /// Absolute end of life, ms since the UNIX epoch, when configured.
    pub absolute_expiry_ms: Option<u64>,
    pub(super) version: u64,
}

/// The JSON stored after the version prefix.
#[derive(Serialize, Deserialize)]
pub(super) struct Stored {
    pub(super) user_id: String,
    pub(super) data: Map<String, Value>,
    pub(super) created_ms: u64,
    pub(super) absolute_ms: Option<u64>,
}

/// Changes to apply to a session's data; keys not named are left as they are,
/// so concurrent updates of different keys never lose each other's writes.
#[derive(Debug, Clone, Default, PartialEq)]
#[must_use]
pub struct SessionUpdate {
    set: Map<String, Value>,
    remove: Vec<String>,
}

impl SessionUpdate {
    /// No changes yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `value`.
    pub fn set(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.set.insert(key.into(), value.into());
        self
    }

    /// Removes `key`.
    pub fn remove(mut self, key: impl Into<String>) -> Self {
        self.remove.push(key.into());
        self
    }

    pub(super) fn apply(&self, data: &mut Map<String, Value>) {
        for key in &self.remove {
            data.remove(key);
        }
        for (key, value) in &self.set {
            data.insert(key.clone(), value.clone());
        }
    }
}

pub(super) fn validate_user(user_id: &str) -> Result<()> {
    if user_id.is_empty()
        || user_id.len() > MAX_USER_ID_LEN
        || user_id.chars().any(char::is_control)
    {
        return Err(Error::invalid_input(
            "session user id",
            format!("expected 1 to {MAX_USER_ID_LEN} printable characters"),
        ));
    }
    Ok(())
}

pub(super) fn encode(version: u64, stored: &Stored) -> Result<Bytes> {
    let json = serde_json::to_vec(stored).map_err(|source| Error::Encode {
        key: "session".to_owned(),
        source: Box::new(source),
    })?;
    let mut out = Vec::with_capacity(json.len() + 21);
    out.extend_from_slice(version.to_string().as_bytes());
    out.push(b'|');
    out.extend_from_slice(&json);
    if out.len() > MAX_SESSION_BYTES {
        return Err(Error::invalid_input(
            "session data",
            format!(
                "it encodes to {} bytes; at most {MAX_SESSION_BYTES} are allowed",
                out.len()
            ),
        ));
    }
    Ok(Bytes::from(out))
}

pub(super) fn decode(id: &SessionId, raw: &[u8]) -> Option<Session> {
    let prefix = version_prefix(raw)?;
    let version = std::str::from_utf8(prefix).ok()?.parse().ok()?;
    let stored: Stored = serde_json::from_slice(&raw[prefix.len() + 1..]).ok()?;
    Some(Session {
        id: id.clone(),
        user_id: stored.user_id,
        data: stored.data,
        created_at_ms: stored.created_ms,
        absolute_expiry_ms: stored.absolute_ms,
        version,
    })
}

/// The `<version>` of a stored session, when well formed.
pub(super) fn version_prefix(stored: &[u8]) -> Option<&[u8]> {
    let end = stored.iter().position(|b| *b == b'|')?;
    let prefix = &stored[..end];
    (!prefix.is_empty() && prefix.iter().all(u8::is_ascii_digit)).then_some(prefix)
}
