//! Where sessions live in the store, in one place: `sess:s:<id>` holds a
//! session, `sess:u:<user id>` the set of the user's session ids.

use super::SessionId;
use crate::error::Error;

const SESSION_PREFIX: &str = "sess:s:";
const INDEX_PREFIX: &str = "sess:u:";

/// The key of session `id`.
pub(super) fn session_key(id: &SessionId) -> String {
    raw_session_key(id.expose())
}

/// The key of a session whose id was read from an index (not parsed yet).
pub(super) fn raw_session_key(id: &str) -> String {
    let mut key = String::with_capacity(SESSION_PREFIX.len() + id.len());
    key.push_str(SESSION_PREFIX);
    key.push_str(id);
    key
}

/// The key of `user_id`'s index.
pub(super) fn index_key(user_id: &str) -> String {
    format!("{INDEX_PREFIX}{user_id}")
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
