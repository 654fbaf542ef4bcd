//! The id of a stream entry, as Redis writes it: `<milliseconds>-<sequence>`.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// A stream entry id: the store's clock in milliseconds when the entry was
/// appended and a sequence number within that millisecond. Ids only grow, so
/// they order entries and can be compared across reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StreamId {
    /// Milliseconds since the UNIX epoch (the store's clock).
    pub ms: u64,
    /// Sequence within the millisecond.
    pub seq: u64,
}

impl StreamId {
    /// The id that comes right after this one.
    pub fn next(self) -> StreamId {
        match self.seq.checked_add(1) {
            Some(seq) => StreamId { ms: self.ms, seq },
            None => StreamId {
                ms: self.ms.saturating_add(1),
                seq: 0,
            },
        }
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl FromStr for StreamId {
    type Err = Error;

    /// Parses `<ms>-<seq>` (both decimal); anything else is an
    /// [`Error::InvalidInput`] naming the expected form.
    fn from_str(text: &str) -> Result<Self> {
        let invalid = || {
            Error::invalid_input(
                "stream id",
                format!(
                    "{:?} is not of the form <milliseconds>-<sequence>",
                    text.chars().take(64).collect::<String>()
                ),
            )
        };
        let (ms, seq) = text.split_once('-').ok_or_else(invalid)?;
        let digits = |part: &str| {
            if part.is_empty() || part.len() > 20 || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid());
            }
            part.parse::<u64>().map_err(|_| invalid())
        };
        Ok(StreamId {
            ms: digits(ms)?,
            seq: digits(seq)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_redis_ids() {
        let id: StreamId = "1700000000000-3".parse().unwrap_or_default();
        assert_eq!(
            id,
            StreamId {
                ms: 1_700_000_000_000,
                seq: 3
            }
        );
        assert_eq!(id.to_string(), "1700000000000-3");
        assert_eq!(id.next().to_string(), "1700000000000-4");
        for bad in [
            "",
            "1",
            "-1",
            "1-",
            "a-1",
            "1-b",
            "1-2-3",
            "+1-2",
            "99999999999999999999999-1",
        ] {
            assert!(bad.parse::<StreamId>().is_err(), "{bad}");
        }
    }
}
