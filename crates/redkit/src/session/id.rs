//! Session ids: 256 bits from the operating system's CSPRNG, URL-safe.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::{Error, Result};

/// Bytes of randomness in an id (256 bits).
const ID_BYTES: usize = 32;
/// Length of the encoded id.
const ID_LEN: usize = 43;

/// A session id. Its `Debug` never shows the id (a bearer secret); read it
/// with [`SessionId::expose`] only to put it in a cookie.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionId(String);

impl SessionId {
    /// A new random id: 256 bits from the OS CSPRNG, base64url without padding.
    pub fn generate() -> Result<Self> {
        let mut bytes = [0u8; ID_BYTES];
        getrandom::fill(&mut bytes).map_err(|err| {
            Error::invalid_input(
                "session id",
                format!("the operating system's random generator failed: {err}"),
            )
        })?;
        Ok(SessionId(URL_SAFE_NO_PAD.encode(bytes)))
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
    }
}
