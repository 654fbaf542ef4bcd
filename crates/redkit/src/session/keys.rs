//! Where sessions live in the store, in one place.
//!
//! `sess:{<tag>}:s:<id>` holds a session and `sess:{<tag>}:u:<user id>` the
//! set of the user's session ids, where `<tag>` is four base64url characters
//! derived from the user id (24 bits of its FNV-1a hash) and is also the
//! first four characters of every session id made for that user.
//!
//! Why: creating or destroying a session changes the session and its
//! user's index in one script, and on Redis Cluster a script's keys must
//! share a hash slot. The braces make Redis hash only the tag, so a user's
//! sessions and index always share a slot, while different users spread
//! over the cluster; and since a request brings only the session id, the id
//! carries the tag. (A 64-bit FNV digest also names sessions in the local
//! cache's announcements: [`fnv1a`] is that one hash.)
//!
//! The tag is a function of the user id, so one user's ids share their
//! first four characters; they reveal nothing the bearer of the id does not
//! already hold.
//!
//! Previous layout (`sess:s:<id>`, `sess:u:<user>`, 43-character ids):
//! those ids no longer parse, so a cookie from the previous version is an
//! absent session (users log in again) and its keys expire with their TTL.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::SessionId;
use super::id::TAG_LEN;
use crate::error::Error;

/// The slot tag of `user_id`'s sessions and index.
pub(super) fn user_tag(user_id: &str) -> String {
    let hash = fnv1a(user_id.as_bytes()).to_be_bytes();
    let tag = URL_SAFE_NO_PAD.encode(&hash[5..]);
    debug_assert_eq!(tag.len(), TAG_LEN);
    tag
}

/// The store key of session `id` (before the store's key prefix): for
/// tools and tests that look at the store directly.
pub fn session_key(id: &SessionId) -> String {
    tagged_key(id.tag(), "s", id.expose())
}

/// The key of a session whose id was read from an index (not parsed yet);
/// `None` when it does not have the shape of an id.
pub(super) fn raw_session_key(id: &str) -> Option<String> {
    SessionId::parse(id).map(|id| session_key(&id))
}

/// The store key of `user_id`'s index, the set of their session ids
/// (before the store's key prefix).
pub fn index_key(user_id: &str) -> String {
    tagged_key(&user_tag(user_id), "u", user_id)
}

fn tagged_key(tag: &str, kind: &str, name: &str) -> String {
    let mut key = String::with_capacity(10 + tag.len() + name.len());
    key.push_str("sess:{");
    key.push_str(tag);
    key.push_str("}:");
    key.push_str(kind);
    key.push(':');
    key.push_str(name);
    key
}

/// FNV-1a (64-bit): the same in every process and every version.
pub(super) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Errors that name a key would name a session id (a bearer secret): hide it.
pub(super) fn redact(error: Error) -> Error {
    match error {
        Error::WrongType { expected, .. } => Error::WrongType {
            key: "<session key>".to_owned(),
            expected,
        },
        other => other,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::connection::key_slot;

    #[test]
    fn a_session_and_its_user_index_share_a_slot() {
        for user in ["alice", "42", "user:{braces}", "ünïcode", "x"] {
            let id = SessionId::generate_tagged(&user_tag(user)).unwrap();
            let session = session_key(&id);
            let index = index_key(user);
            assert_eq!(key_slot(session.as_bytes()), key_slot(index.as_bytes()));
            // Also under a key prefix, as the Redis store writes them.
            let prefixed = |key: &str| format!("app:{key}");
            assert_eq!(
                key_slot(prefixed(&session).as_bytes()),
                key_slot(prefixed(&index).as_bytes())
            );
            assert!(session.starts_with(&format!("sess:{{{}}}:s:", id.tag())));
            assert_eq!(raw_session_key(id.expose()), Some(session));
        }
    }

    #[test]
    fn users_spread_over_slots() {
        let slots: std::collections::HashSet<u16> = (0..1000)
            .map(|i| key_slot(index_key(&format!("user-{i}")).as_bytes()))
            .collect();
        assert!(slots.len() > 900, "{} distinct slots", slots.len());
    }

    #[test]
    fn the_tag_is_stable_and_url_safe() {
        // Instances of every version must agree on a user's tag.
        assert_eq!(user_tag("alice"), user_tag("alice"));
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        for user in ["a", "b", "alice", "{", "}"] {
            let tag = user_tag(user);
            assert_eq!(tag.len(), TAG_LEN);
            assert!(
                tag.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            );
        }
    }

    #[test]
    fn index_entries_that_are_not_ids_have_no_key() {
        assert_eq!(raw_session_key("../../etc"), None);
        assert_eq!(raw_session_key(&"a".repeat(43)), None);
    }
}
