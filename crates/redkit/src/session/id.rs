//! Session ids: a 4-character slot tag, then 256 bits from the operating
//! system's CSPRNG, URL-safe.
//!
//! Why a tag: a session and its user's index change together in one script,
//! so on Redis Cluster both keys must share a hash slot — and a request
//! brings only the id. The tag (see [`keys`](super::keys)) is derived from
//! the user id, so the id alone names the slot of its user's index.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::{Error, Result};

/// Bytes of randomness in an id (256 bits).
const ID_BYTES: usize = 32;
/// Length of the slot tag that starts an id.
pub(super) const TAG_LEN: usize = 4;
/// Length of the encoded id: the tag, then the random part.
const ID_LEN: usize = TAG_LEN + 43;

/// A session id. Its `Debug` never shows the id (a bearer secret); read it
/// with [`SessionId::expose`] only to put it in a cookie.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionId(String);

impl SessionId {
    /// A new random id: 256 bits from the OS CSPRNG, base64url without
    /// padding, after a random slot tag. ([`Sessions`](super::Sessions)
    /// makes its ids with the tag of their user instead.)
    pub fn generate() -> Result<Self> {
        let mut tag = [0u8; 3];
        random(&mut tag)?;
        Self::generate_tagged(&URL_SAFE_NO_PAD.encode(tag))
    }

    /// A new random id starting with `tag` ([`TAG_LEN`] base64url characters).
    pub(super) fn generate_tagged(tag: &str) -> Result<Self> {
        debug_assert_eq!(tag.len(), TAG_LEN);
        let mut bytes = [0u8; ID_BYTES];
        random(&mut bytes)?;
        let mut id = String::with_capacity(ID_LEN);
        id.push_str(tag);
        URL_SAFE_NO_PAD.encode_string(bytes, &mut id);
        Ok(SessionId(id))
    }

    /// The slot tag the id starts with.
    pub(super) fn tag(&self) -> &str {
        &self.0[..TAG_LEN]
    }

    /// Accepts an id received from a client, if it has the shape of one.
    /// Anything else (too short, too long, other characters) is refused, so
    /// hostile cookie values never reach the store.
    pub fn parse(raw: &str) -> Option<Self> {
        (raw.len() == ID_LEN
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        .then(|| SessionId(raw.to_owned()))
    }

    /// The id itself, for the cookie.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

fn random(bytes: &mut [u8]) -> Result<()> {
    getrandom::fill(bytes).map_err(|err| {
        Error::invalid_input(
            "session id",
            format!("the operating system's random generator failed: {err}"),
        )
    })
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId(***)")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_random_url_safe_and_hidden_from_debug() {
        let a = SessionId::generate().unwrap();
        let b = SessionId::generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), ID_LEN);
        assert_eq!(SessionId::parse(a.expose()), Some(a.clone()));
        assert_eq!(format!("{a:?}"), "SessionId(***)");
        assert!(SessionId::parse("short").is_none());
        assert!(SessionId::parse(&"*".repeat(ID_LEN)).is_none());
        assert!(SessionId::parse(&"a".repeat(ID_LEN + 1)).is_none());
        // Ids of the previous layout (43 characters, no tag) are refused.
        assert!(SessionId::parse(&"a".repeat(43)).is_none());
    }

    #[test]
    fn tagged_ids_start_with_their_tag() {
        let id = SessionId::generate_tagged("AbC_").unwrap();
        assert_eq!(id.tag(), "AbC_");
        assert_eq!(id.expose().len(), ID_LEN);
        assert_eq!(SessionId::parse(id.expose()), Some(id.clone()));
        assert_eq!(SessionId::generate().unwrap().tag().len(), TAG_LEN);
    }
}
