//! [`tower_sessions::SessionStore`](tower_sessions_core::SessionStore) on a
//! redkit [`Store`].
//!
//! Records are JSON under `tsess:<id>`, expiring at the record's expiry date.
//! With `rolling` on, a load extends the record's life to at least the
//! inactivity duration from now in the same round trip (a script with a
//! native twin, [`ROLLING_GET`]) and returns the record with its new expiry
//! date — what tower-sessions issue #74 asks for. Rolling only ever
//! lengthens a life: a record whose expiry date is further away (an
//! `Expiry::AtDateTime`, an `OnSessionEnd` session, a long `OnInactivity`)
//! keeps it.

use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;
use tower_sessions_core::session::{Id, Record};
use tower_sessions_core::session_store::{Error as StoreError, Result as StoreResult};

use super::scripts::ROLLING_GET;
use crate::store::{AnyStore, ScriptArg, ScriptValue, Store};

/// A tower-sessions store backed by redkit.
#[derive(Clone)]
pub struct SessionStore<S: Store = AnyStore> {
    store: S,
    rolling: Option<Duration>,
}

impl<S: Store> std::fmt::Debug for SessionStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionStore")
            .field("rolling", &self.rolling)
            .finish()
    }
}

impl<S: Store> SessionStore<S> {
    /// A store that keeps each record until its expiry date.
    pub fn new(store: S) -> Self {
        SessionStore {
            store,
            rolling: None,
        }
    }

    /// Each load extends the record's life to at least `inactivity` from
    /// now; a record that would live longer keeps its own expiry.
    #[must_use]
    pub fn rolling(mut self, inactivity: Duration) -> Self {
        self.rolling = Some(inactivity);
        self
    }

    fn key(id: &Id) -> String {
        format!("tsess:{id}")
    }
}

fn backend(error: crate::Error) -> StoreError {
    StoreError::Backend(super::keys::redact(error).to_string())
}

fn ttl_until(expiry: OffsetDateTime) -> Option<Duration> {
    let left = expiry - OffsetDateTime::now_utc();
    (left.is_positive()).then(|| Duration::from_millis(left.whole_milliseconds().max(1) as u64))
}

#[async_trait]
impl<S: Store + std::fmt::Debug> tower_sessions_core::SessionStore for SessionStore<S> {
    async fn create(&self, record: &mut Record) -> StoreResult<()> {
        let Some(ttl) = ttl_until(record.expiry_date) else {
            return Ok(());
        };
        // A fresh id until one is free (collisions of 128-bit ids are
        // theoretical, but never overwrite someone else's session). The
        // record holds its id, so it is encoded again for each id tried.
        loop {
            let encoded =
                serde_json::to_vec(&*record).map_err(|e| StoreError::Encode(e.to_string()))?;
            if self
                .store
                .set_if_absent(&Self::key(&record.id), &encoded, Some(ttl))
                .await
                .map_err(backend)?
            {
                return Ok(());
            }
            record.id = Id::default();
        }
    }

    async fn save(&self, record: &Record) -> StoreResult<()> {
        let key = Self::key(&record.id);
        match ttl_until(record.expiry_date) {
            Some(ttl) => {
                let encoded =
                    serde_json::to_vec(record).map_err(|e| StoreError::Encode(e.to_string()))?;
                self.store
                    .set(&key, &encoded, Some(ttl))
                    .await
                    .map_err(backend)
            }
            None => self
                .store
                .delete(&[&key])
                .await
                .map(|_| ())
                .map_err(backend),
        }
    }

    async fn load(&self, id: &Id) -> StoreResult<Option<Record>> {
        let key = Self::key(id);
        let raw = match self.rolling {
            Some(inactivity) => self
                .store
                .run_script(&ROLLING_GET, &[&key], &[ScriptArg::millis(inactivity)])
                .await
                .map(|reply| match reply {
                    ScriptValue::Bytes(bytes) => Some(bytes),
                    _ => None,
                }),
            None => self.store.get(&key).await,
        }
        .map_err(backend)?;
        let Some(raw) = raw else {
            return Ok(None);
        };
        let mut record: Record =
            serde_json::from_slice(&raw).map_err(|e| StoreError::Decode(e.to_string()))?;
        if let Some(inactivity) = self.rolling {
            let extended = OffsetDateTime::now_utc()
                + time::Duration::milliseconds(
                    i64::try_from(inactivity.as_millis()).unwrap_or(i64::MAX),
                );
            // The script extended the key's life to this if it was shorter;
            // the record reports it. The stored copy keeps its older date,
            // which nothing reads.
            if extended > record.expiry_date {
                record.expiry_date = extended;
            }
        }
        Ok(Some(record))
    }

    async fn delete(&self, id: &Id) -> StoreResult<()> {
        self.store
            .delete(&[&Self::key(id)])
            .await
            .map(|_| ())
            .map_err(backend)
    }
}
