//! How values become bytes.
//!
//! JSON is the default: services in other languages sharing the Redis (a
//! Node or Python service next to yours) can read what redkit writes. MessagePack is the compact binary option, still
//! self-describing and cross-language. Which codec wrote an entry is recorded
//! in its header, so changing the codec never misreads old entries.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::BoxError;

/// A serialization format for cached values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Codec {
    /// JSON (`serde_json`). Default.
    #[default]
    Json,
    /// MessagePack (`rmp-serde`), with field names so that struct changes
    /// stay readable. Needs the `msgpack` feature; without it, entries
    /// written as MessagePack by another instance read as misses.
    #[cfg(feature = "msgpack")]
    MessagePack,
}

impl Codec {
    pub(crate) fn id(self) -> u8 {
        match self {
            Codec::Json => 0,
            #[cfg(feature = "msgpack")]
            Codec::MessagePack => 1,
        }
    }

    pub(crate) fn from_id(id: u8) -> Option<Self> {
        match id {
            0 => Some(Codec::Json),
            #[cfg(feature = "msgpack")]
            1 => Some(Codec::MessagePack),
            _ => None,
        }
    }

    /// Appends the encoded `value` to `out`.
    pub(crate) fn encode_into<T: Serialize>(
        self,
        value: &T,
        out: &mut Vec<u8>,
    ) -> Result<(), BoxError> {
        match self {
            Codec::Json => Ok(serde_json::to_writer(out, value)?),
            #[cfg(feature = "msgpack")]
            Codec::MessagePack => Ok(rmp_serde::encode::write_named(out, value)?),
        }
    }

    pub(crate) fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T, BoxError> {
        match self {
            Codec::Json => Ok(serde_json::from_slice(bytes)?),
            #[cfg(feature = "msgpack")]
            Codec::MessagePack => Ok(rmp_serde::from_slice(bytes)?),
        }
    }
}
