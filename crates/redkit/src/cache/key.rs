//! Cache keys: validation, and where entries, tag versions and locks live.
//!
//! Keys, tags and prefixes are data. Control characters and over-long values
//! are refused with a clear error; glob characters are allowed and escaped
//! wherever a pattern is built, so they can never widen an invalidation.
//!
//! Layout under the store's key prefix, for a cache namespace `ns`:
//!
//! | what | key |
//! |---|---|
//! | entry | `ns:v:<key>` |
//! | tag version counter | `ns:t:<tag>` |
//! | loading lock | `ns:l:<key>` |
//! | backplane channel | `redkit:cache:ns` |

use crate::error::{Error, Result};
use crate::store::escape_glob;

/// Longest accepted namespace, in bytes.
const MAX_NAMESPACE_LEN: usize = 128;

/// Checks a key, tag or prefix (`what`) for emptiness, length and control
/// characters.
pub(crate) fn validate(
    what: &'static str,
    value: &str,
    max_len: usize,
    allow_empty: bool,
) -> Result<()> {
    if value.is_empty() && !allow_empty {
        return Err(Error::invalid_input(
            what,
            "it is empty; expected at least one character",
        ));
    }
    if value.len() > max_len {
        return Err(Error::invalid_input(
            what,
            format!(
                "it is {} bytes long; at most {max_len} bytes are allowed",
                value.len()
            ),
        ));
    }
    // Fast path: printable ASCII has no control characters to look for.
    if value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Ok(());
    }
    if let Some((at, c)) = value.char_indices().find(|(_, c)| c.is_control()) {
        return Err(Error::invalid_input(
            what,
            format!(
                "it contains the control character U+{:04X} at byte {at}; expected printable characters",
                u32::from(c)
            ),
        ));
    }
    Ok(())
}

/// Where a namespace's data lives.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    namespace: String,
}

impl Layout {
    pub(crate) fn new(namespace: &str) -> Result<Self> {
        validate("cache namespace", namespace, MAX_NAMESPACE_LEN, false)?;
        if namespace.contains(':') {
            return Err(Error::invalid_input(
                "cache namespace",
                format!(
                    "{namespace:?} contains `:`; expected a name without colons, such as `tasks`"
                ),
            ));
        }
        Ok(Layout {
            namespace: namespace.to_owned(),
        })
    }

    pub(crate) fn namespace(&self) -> &str {
        &self.namespace
    }

    pub(crate) fn entry(&self, key: &str) -> String {
        let mut entry = String::with_capacity(self.namespace.len() + 3 + key.len());
        entry.push_str(&self.namespace);
        entry.push_str(":v:");
        entry.push_str(key);
        entry
    }

    pub(crate) fn tag(&self, tag: &str) -> String {
        format!("{}:t:{tag}", self.namespace)
    }

    pub(crate) fn lock(&self, key: &str) -> String {
        format!("{}:l:{key}", self.namespace)
    }

    pub(crate) fn channel(&self) -> String {
        format!("redkit:cache:{}", self.namespace)
    }

    /// Pattern for entries whose key starts with `prefix`, glob-escaped.
    pub(crate) fn entries_with_prefix(&self, prefix: &str) -> String {
        format!(
            "{}:v:{}*",
            escape_glob(&self.namespace),
            escape_glob(prefix)
        )
    }

    /// Pattern for everything of this namespace.
    pub(crate) fn everything(&self) -> String {
        format!("{}:*", escape_glob(&self.namespace))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn refuses_control_characters_long_and_empty_values() {
        let error = validate("cache key", "a\nb", 100, false)
            .unwrap_err()
            .to_string();
        assert!(error.contains("U+000A at byte 1"), "{error}");
        let error = validate("cache key", &"x".repeat(101), 100, false)
            .unwrap_err()
            .to_string();
        assert!(error.contains("101 bytes"), "{error}");
        assert!(validate("cache key", "", 100, false).is_err());
        assert!(validate("cache prefix", "", 100, true).is_ok());
        assert!(validate("cache key", "user:*?[]\\ ключ", 100, false).is_ok());
    }

    #[test]
    fn namespaces_cannot_overlap() {
        assert!(Layout::new("a:v").is_err());
        let layout = Layout::new("tasks").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(layout.entry("k*"), "tasks:v:k*");
        assert_eq!(layout.entries_with_prefix("u[1]"), "tasks:v:u\\[1\\]*");
    }
}
