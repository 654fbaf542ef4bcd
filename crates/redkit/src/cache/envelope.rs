//! The stored form of a cache entry: a small binary header, then the payload.
//!
//! ```text
//! "RK" | version u8 | flags u8 | fresh_until u64 | keep_until u64 | tag count u16
//!      | (tag len u16, tag bytes, tag version u64)* | payload
//! ```
//!
//! Integers are little-endian milliseconds since the UNIX epoch. Flags: bit 0
//! set when the payload is LZ4-compressed; bits 4–7 the codec (0 JSON,
//! 1 MessagePack). With the default JSON codec and no compression the payload
//! is plain JSON, readable from any language once the header is skipped.
//! Anything that does not parse is corrupt: the cache treats it as a miss.

use bytes::{BufMut, Bytes};
use serde::Serialize;

use super::codec::Codec;
use crate::error::BoxError;

const MAGIC: &[u8; 2] = b"RK";
const VERSION: u8 = 1;
const COMPRESSED: u8 = 0b0000_0001;
/// Where the flags byte sits: after the magic and the version.
const FLAGS_AT: usize = 3;

/// Metadata stored with every entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Meta {
    /// Fresh until this time (ms since epoch).
    pub(crate) fresh_until: u64,
    /// Kept (as stale) until this time (ms since epoch).
    pub(crate) keep_until: u64,
    /// The entry's tags with their versions at write time.
    pub(crate) tags: Vec<(String, u64)>,
}

/// A decoded envelope header: metadata, codec, and the payload as stored —
/// decompressed only when asked for ([`DecodedEntry::payload`]), so a
/// reader that finds the entry stale never pays for it.
#[derive(Debug)]
pub(crate) struct DecodedEntry {
    pub(crate) meta: Meta,
    pub(crate) codec: Codec,
    body: Bytes,
    compressed: bool,
}

impl DecodedEntry {
    /// The payload, decompressed when it was stored compressed.
    pub(crate) fn payload(&self) -> Result<Bytes, Corrupt> {
        if !self.compressed {
            return Ok(self.body.clone());
        }
        // The size prefix is data too: refuse sizes LZ4 cannot reach (its
        // ratio is at most 255:1) before allocating them.
        let declared = self
            .body
            .get(..4)
            .map(|raw| u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]) as usize)
            .ok_or(Corrupt::Compression)?;
        if declared > self.body.len().saturating_mul(255) {
            return Err(Corrupt::Compression);
        }
        decompress(&self.body).map(Bytes::from)
    }
}

/// Why stored bytes could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Corrupt {
    Header,
    Compression,
}

/// The stored form of `value`: the header, then the payload `codec` writes
/// straight into the same buffer (one allocation, no copy), compressed in
/// place when longer than `compress_above`.
pub(crate) fn encode<T: Serialize>(
    meta: &Meta,
    codec: Codec,
    value: &T,
    compress_above: usize,
) -> Result<Bytes, BoxError> {
    frame(meta, codec, compress_above, |out| {
        codec.encode_into(value, out)
    })
}

/// The header of `meta`, then what `write_payload` appends.
fn frame(
    meta: &Meta,
    codec: Codec,
    compress_above: usize,
    write_payload: impl FnOnce(&mut Vec<u8>) -> Result<(), BoxError>,
) -> Result<Bytes, BoxError> {
    let tag_bytes: usize = meta.tags.iter().map(|(tag, _)| tag.len() + 10).sum();
    // The header, and room for a small payload (as serde_json starts with).
    let mut out = Vec::with_capacity(24 + tag_bytes + 128);
    out.put_slice(MAGIC);
    out.put_u8(VERSION);
    out.put_u8(codec.id() << 4);
    out.put_u64_le(meta.fresh_until);
    out.put_u64_le(meta.keep_until);
    out.put_u16_le(u16::try_from(meta.tags.len()).unwrap_or(u16::MAX));
    for (tag, version) in meta.tags.iter().take(usize::from(u16::MAX)) {
        out.put_u16_le(u16::try_from(tag.len()).unwrap_or(u16::MAX));
        out.put_slice(&tag.as_bytes()[..tag.len().min(usize::from(u16::MAX))]);
        out.put_u64_le(*version);
    }
    let body_at = out.len();
    write_payload(&mut out)?;
    if cfg!(feature = "lz4") && out.len() - body_at > compress_above {
        let compressed = compress(&out[body_at..]);
        out.truncate(body_at);
        out.extend_from_slice(&compressed);
        out[FLAGS_AT] |= COMPRESSED;
    }
    Ok(Bytes::from(out))
}

pub(crate) fn decode(bytes: &Bytes) -> Result<DecodedEntry, Corrupt> {
    let mut reader = Reader { bytes, at: 0 };
    if reader.take(2)? != MAGIC || reader.u8()? != VERSION {
        return Err(Corrupt::Header);
    }
    let flags = reader.u8()?;
    let codec = Codec::from_id(flags >> 4).ok_or(Corrupt::Header)?;
    let fresh_until = reader.u64()?;
    let keep_until = reader.u64()?;
    let count = reader.u16()?;
    let mut tags = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let len = usize::from(reader.u16()?);
        let tag = std::str::from_utf8(reader.take(len)?).map_err(|_| Corrupt::Header)?;
        tags.push((tag.to_owned(), reader.u64()?));
    }
    Ok(DecodedEntry {
        meta: Meta {
            fresh_until,
            keep_until,
            tags,
        },
        codec,
        body: bytes.slice(reader.at..),
        compressed: flags & COMPRESSED != 0,
    })
}

/// LZ4 with the size prepended (feature `lz4`).
#[cfg(feature = "lz4")]
fn compress(payload: &[u8]) -> Vec<u8> {
    lz4_flex::compress_prepend_size(payload)
}

/// Without the `lz4` feature nothing is compressed (`encode` checks first).
#[cfg(not(feature = "lz4"))]
fn compress(payload: &[u8]) -> Vec<u8> {
    payload.to_vec()
}

#[cfg(feature = "lz4")]
fn decompress(body: &[u8]) -> Result<Vec<u8>, Corrupt> {
    lz4_flex::decompress_size_prepended(body).map_err(|_| Corrupt::Compression)
}

/// Without the `lz4` feature a compressed entry (written by an instance
/// with it) cannot be read: it counts as corrupt, so the cache misses.
#[cfg(not(feature = "lz4"))]
fn decompress(_body: &[u8]) -> Result<Vec<u8>, Corrupt> {
    Err(Corrupt::Compression)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Corrupt> {
        let end = self.at.checked_add(n).ok_or(Corrupt::Header)?;
        let slice = self.bytes.get(self.at..end).ok_or(Corrupt::Header)?;
        self.at = end;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8, Corrupt> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, Corrupt> {
        let mut raw = [0u8; 2];
        raw.copy_from_slice(self.take(2)?);
        Ok(u16::from_le_bytes(raw))
    }

    fn u64(&mut self) -> Result<u64, Corrupt> {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(raw))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The stored form of ready-made payload bytes.
    fn encode(meta: &Meta, codec: Codec, payload: &[u8], compress_above: usize) -> Bytes {
        frame(meta, codec, compress_above, |out| {
            out.extend_from_slice(payload);
            Ok(())
        })
        .unwrap()
    }

    fn meta() -> Meta {
        Meta {
            fresh_until: 10,
            keep_until: 20,
            tags: vec![("user:1".to_owned(), 3), ("ümlaut".to_owned(), 0)],
        }
    }

    #[test]
    fn roundtrips_with_and_without_compression() {
        let payload = vec![b'x'; 5000];
        #[cfg(feature = "msgpack")]
        let codec = Codec::MessagePack;
        #[cfg(not(feature = "msgpack"))]
        let codec = Codec::Json;
        for threshold in [0, usize::MAX] {
            let bytes = encode(&meta(), codec, &payload, threshold);
            let envelope = decode(&bytes).unwrap();
            assert_eq!(envelope.meta, meta());
            assert_eq!(envelope.codec, codec);
            assert_eq!(envelope.payload().unwrap(), payload);
        }
        assert!(encode(&meta(), Codec::Json, &payload, 100).len() < 1000);
    }

    #[test]
    fn any_truncation_or_garbage_is_corrupt_not_a_panic() {
        let bytes = encode(&meta(), Codec::Json, b"{\"a\":1}", 1000);
        for len in 0..30 {
            assert!(decode(&bytes.slice(..len)).is_err(), "len {len}");
        }
        assert!(decode(&Bytes::from_static(b"plain text")).is_err());
        let mut compressed = encode(&meta(), Codec::Json, &[7u8; 3000], 10).to_vec();
        let last = compressed.len() - 1;
        compressed.truncate(last - 5);
        // The header still reads; the payload is where the damage shows.
        let truncated = decode(&Bytes::from(compressed)).unwrap();
        assert_eq!(truncated.meta, meta());
        assert!(truncated.payload().is_err());
        for seed in 0..500u64 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let garbage: Vec<u8> = (0..rng.usize(0..64)).map(|_| rng.u8(..)).collect();
            let _ = decode(&Bytes::from(garbage)).map(|entry| entry.payload());
        }
    }
}
