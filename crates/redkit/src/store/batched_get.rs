//! Point reads that reach Redis together go in one `MGET`.
//!
//! Under load Redis spends most of a `GET` on the command's machinery —
//! parsing, dispatch, writing the reply — not on the key. Reads through one
//! [`BatchedGets`] that arrive while its `MGET` is in flight gather, and the
//! next `MGET` carries all of them (up to [`MAX_KEYS`]), as ioredis'
//! auto-pipelining does; a read alone goes out at once. Sessions load this
//! way.
//!
//! Every read goes through `MGET`, alone or not, so the answer never depends
//! on the load: a key holding another type reads as absent (where `GET`
//! fails with `WRONGTYPE`). On Cluster the keys of one `MGET` must share a
//! slot, so each read is a plain `GET` there; the embedded store has no
//! round trip to save and answers directly.
//!
//! Reads join one of two lanes ([`Lanes`]), each with one `MGET` in flight.
//! Background tasks send the `MGET`s, so a caller that gives up (a dropped
//! request) never strands the reads of others. A read that arrives while
//! its lane's `MGET` is in flight waits for that one, then for its own: at
//! most two command timeouts when Redis hangs, where a lone `GET` waits one.

use bytes::Bytes;
use tokio::sync::oneshot;

use super::{Backend, Store};
use crate::coalesce::Lanes;
use crate::error::{Error, Result};

/// The most keys in one `MGET`: bounds the time one call holds Redis.
pub(crate) const MAX_KEYS: usize = 128;

/// Reads waiting for the next `MGET`s of one reader.
#[derive(Debug, Default)]
pub(crate) struct BatchedGets {
    lanes: Lanes<Waiting>,
}

#[derive(Debug)]
struct Waiting {
    key: String,
    reply: oneshot::Sender<Result<Option<Bytes>>>,
}

impl BatchedGets {
    /// The value of `key` in `store` (without its prefix), read in the next
    /// `MGET`.
    pub(crate) async fn get<S: Store>(&self, store: &S, key: &str) -> Result<Option<Bytes>> {
        if store.backend() == Backend::Embedded || store.is_cluster() {
            return store.get(key).await;
        }
        let (reply, answer) = oneshot::channel();
        let waiting = Waiting {
            key: key.to_owned(),
            reply,
        };
        self.lanes.push(waiting, MAX_KEYS, store, send);
        answer.await.unwrap_or_else(|_| {
            Err(Error::Command {
                command: "MGET".to_owned(),
                source: "the call carrying this read was abandoned".into(),
            })
        })
    }
}

/// One `MGET` for `batch`; every waiting read gets its value or the call's
/// error.
async fn send<S: Store>(store: S, batch: Vec<Waiting>) {
    let keys: Vec<&str> = batch.iter().map(|waiting| waiting.key.as_str()).collect();
    match store.get_many(&keys).await {
        Ok(values) if values.len() == batch.len() => {
            for (waiting, value) in batch.into_iter().zip(values) {
                // A caller that gave up has dropped its receiver: nothing to do.
                let _ = waiting.reply.send(Ok(value));
            }
        }
        Ok(values) => {
            let message = format!("{} values for {} keys", values.len(), batch.len());
            for waiting in batch {
                let _ = waiting.reply.send(Err(Error::Command {
                    command: "MGET".to_owned(),
                    source: message.clone().into(),
                }));
            }
        }
        Err(error) => {
            for waiting in batch {
                let copy = error.duplicate().unwrap_or_else(|| Error::Command {
                    command: "MGET".to_owned(),
                    source: error.to_string().into(),
                });
                let _ = waiting.reply.send(Err(copy));
            }
        }
    }
}
