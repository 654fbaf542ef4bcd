//! Keeping every instance's L1 coherent through pub/sub.
//!
//! Every set, delete and invalidation publishes a small message on the
//! namespace's channel: the instance id and the keys, tag or prefix — never
//! the value. Other instances evict (or, for tags, learn the new version of)
//! what the message names; an instance ignores its own messages.
//!
//! Pub/sub is fire-and-forget: messages sent while an instance's subscription
//! is down are lost. When the subscription comes back (`Resubscribed`), the
//! instance drops its whole L1 and its cached tag versions, so nothing it
//! holds can be older than what Redis has.

use serde::{Deserialize, Serialize};

/// One backplane message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Notice {
    /// The sending instance.
    #[serde(rename = "i")]
    pub(crate) instance: String,
    #[serde(flatten)]
    pub(crate) change: Change,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op")]
pub(crate) enum Change {
    /// Keys were written.
    #[serde(rename = "set")]
    Set { k: Vec<String> },
    /// Keys were deleted.
    #[serde(rename = "del")]
    Delete { k: Vec<String> },
    /// A tag's version moved to `v`.
    #[serde(rename = "tag")]
    Tag { t: String, v: u64 },
    /// Keys starting with `p` were deleted.
    #[serde(rename = "prefix")]
    Prefix { p: String },
    /// The namespace was cleared.
    #[serde(rename = "clear")]
    Clear,
}

impl Notice {
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_small_json_without_values() {
        let notice = Notice {
            instance: "abc".to_owned(),
            change: Change::Tag {
                t: "user:1".to_owned(),
                v: 4,
            },
        };
        let bytes = notice.to_bytes();
        assert_eq!(
            std::str::from_utf8(&bytes).ok(),
            Some(r#"{"i":"abc","op":"tag","t":"user:1","v":4}"#)
        );
        assert_eq!(Notice::from_bytes(&bytes), Some(notice));
        assert_eq!(Notice::from_bytes(b"garbage"), None);
    }
}
