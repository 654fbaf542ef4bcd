//! Queue names and the keys of one queue.

use crate::error::{Error, Result};

/// The set of every queue name ever used through a handle (for listings).
pub(crate) const REGISTRY_KEY: &str = "rq:queues";

/// Longest accepted queue name or job id, in bytes.
const MAX_NAME_LEN: usize = 200;

/// The keys of one queue. They share the hash tag `{name}`, so on Cluster a
/// queue lives in one slot and its scripts may touch all of them.
#[derive(Debug, Clone)]
pub(crate) struct QueueKeys {
    name: String,
    keys: [String; 8],
}

impl QueueKeys {
    /// Keys for the queue `name`: 1 to 200 bytes, no braces (they would
    /// break the hash tag), no control characters.
    pub(crate) fn new(name: &str) -> Result<Self> {
        validate(name, "queue name")?;
        if name.contains(['{', '}']) {
            return Err(Error::invalid_input(
                "queue name",
                format!("{name:?} contains a brace; expected a name without {{ or }}"),
            ));
        }
        let key = |part: &str| format!("rq:{{{name}}}:{part}");
        Ok(QueueKeys {
            name: name.to_owned(),
            keys: [
                key("stream"),
                key("delayed"),
                key("dead"),
                key("jobs"),
                key("attempts"),
                key("errors"),
                key("ids"),
                key("seq"),
            ],
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Every key, in the order the scripts declare them.
    pub(crate) fn all(&self) -> [&str; 8] {
        self.keys.each_ref().map(String::as_str)
    }
}

/// Checks a job id given by a caller: 1 to 200 bytes, no control
/// characters, and not starting with `#` (reserved for generated ids).
pub(crate) fn validate_job_id(id: &str) -> Result<()> {
    validate(id, "job id")?;
    if id.starts_with('#') {
        return Err(Error::invalid_input(
            "job id",
            format!("{id:?} starts with '#', which is reserved for generated ids"),
        ));
    }
    Ok(())
}

fn validate(value: &str, what: &'static str) -> Result<()> {
    if value.is_empty() || value.len() > MAX_NAME_LEN {
        return Err(Error::invalid_input(
            what,
            format!(
                "it is {} bytes long; expected 1 to {MAX_NAME_LEN} bytes",
                value.len()
            ),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::invalid_input(
            what,
            format!("{value:?} contains a control character"),
        ));
    }
    Ok(())
}
