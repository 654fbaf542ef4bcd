//! The native session API: [`Sessions`] and its operations on the store.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::{Either, ready};
use serde_json::{Map, Value};

use super::coordination::{TouchMemo, WriterLocks};
use super::keys::{index_key, raw_session_key, redact, session_key, user_tag};
use super::local::{self, LocalSessions, NoLocalCache, SessionCache, SessionChange};
use super::model::{Session, SessionUpdate, Stored, decode, encode, validate_user};
use super::scripts::{CREATE, DESTROY, SAVE_IF_VERSION};
use super::{SessionConfig, SessionId};
use crate::clock::{Clock, SystemClock, millis};
use crate::connection::ConnectionState;
use crate::error::{Error, Result};
use crate::store::{AnyStore, BatchedGets, RedisStore, Replay, ScriptArg, ScriptValue, Store};

/// Attempts of a conflicting concurrent update before giving up.
const MAX_UPDATE_ATTEMPTS: usize = 16;
/// Random ids tried when creating a session before blaming the generator.
const ID_ATTEMPTS: usize = 4;

fn conflict_backoff(attempt: usize) -> Duration {
    let cap_ms = 1u64 << attempt.min(6);
    Duration::from_micros(fastrand::u64(0..=cap_ms * 500))
}

/// Sessions on a [`Store`]: create, get, update, destroy, touch, cycle ids,
/// list and destroy per user. Clones share state.
///
/// Keys: `sess:{<tag>}:s:<id>` holds `<version>|<json>`;
/// `sess:{<tag>}:u:<user>` is the set of the user's session ids, where the
/// tag (derived from the user id, and starting every id made for the user)
/// keeps a user's keys in one Redis Cluster slot. The index is cleaned on every write and listing
/// (ids whose session expired are removed) and expires by itself at most
/// `index_refresh` after the user's last session did, so expired sessions
/// never leave index entries behind for long.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> redkit::Result<()> {
/// use redkit::session::{SessionConfig, SessionUpdate, Sessions};
///
/// let kit = redkit::Redkit::builder().build()?;
/// let sessions = Sessions::new(kit.store().clone(), SessionConfig::default())?;
/// let session = sessions.create("user-42", Default::default()).await?;
/// sessions.update(&session.id, &SessionUpdate::new().set("theme", "dark")).await?;
/// let read = sessions.get(&session.id).await?.expect("the session exists");
/// assert_eq!(read.data["theme"], "dark");
/// assert_eq!(sessions.destroy_all("user-42").await?, 1);
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// Every call fails with the store's error when it cannot be reached — with
/// [`Error::Unavailable`] while Redis is down and
/// [`SessionConfig::fail_closed`](super::SessionConfig::fail_closed) is set
/// — and with [`Error::InvalidInput`] for a user id that is empty or too
/// long.
pub struct Sessions<S: Store = AnyStore> {
    inner: Arc<SessionsInner<S>>,
}

impl<S: Store> Clone for Sessions<S> {
    fn clone(&self) -> Self {
        Sessions {
            inner: self.inner.clone(),
        }
    }
}

struct SessionsInner<S> {
    store: S,
    config: SessionConfig,
    /// Users whose index this instance extended within the refresh interval.
    refreshed: moka::sync::Cache<String, ()>,
    /// Sessions this instance extended within the touch interval.
    touched: TouchMemo,
    /// Serialises this instance's writers of one session, so optimistic
    /// version checks only ever race against other instances.
    writers: WriterLocks,
    /// The in-process cache reads go through ([`NoLocalCache`] unless
    /// [`SessionConfig::local_cache`] is set).
    cache: Arc<dyn SessionCache>,
    /// Loads that reach Redis together share one `MGET`.
    reads: BatchedGets,
}

impl<S: Store> std::fmt::Debug for Sessions<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("config", &self.inner.config)
            .field("extended_recently", &self.inner.touched.len())
            .finish()
    }
}

impl<S: Store> Sessions<S> {
    /// Sessions on `store` with `config`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the setting when a duration of
    /// `config` is zero or out of range.
    pub fn new(store: S, config: SessionConfig) -> Result<Self> {
        if config.ttl.is_zero() || config.index_refresh.is_zero() {
            return Err(Error::invalid_config(
                "session ttl / index_refresh",
                "zero",
                "durations greater than zero",
            ));
        }
        let refreshed = moka::sync::Cache::builder()
            .max_capacity(100_000)
            .time_to_live(config.index_refresh)
            .build();
        let touched = TouchMemo::new(config.touch_interval);
        if config.local_cache.is_zero() && !config.local_fail_safe.is_zero() {
            return Err(Error::invalid_config(
                "session local_fail_safe",
                "set without a local_cache",
                "a non-zero local_cache with it",
            ));
        }
        let cache: Arc<dyn SessionCache> = if config.local_cache.is_zero() {
            Arc::new(NoLocalCache)
        } else {
            if tokio::runtime::Handle::try_current().is_err() {
                return Err(Error::invalid_config(
                    "session local_cache",
                    "set outside a Tokio runtime",
                    "Sessions built inside a Tokio runtime, or a zero local_cache",
                ));
            }
            LocalSessions::start(store.clone(), config.local_cache, config.local_fail_safe)
        };
        Ok(Sessions {
            inner: Arc::new(SessionsInner {
                store,
                config,
                refreshed,
                touched,
                writers: WriterLocks::new(),
                cache,
                reads: BatchedGets::default(),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.inner.config
    }

    fn index_ttl(&self) -> Duration {
        self.inner.config.ttl + self.inner.config.index_refresh
    }

    /// Runs `operation` unless sessions fail closed and the store is serving
    /// from its fallback; also fails closed when the fallback took over during
    /// the call (a write made there stays local and is cleared on recovery).
    fn guarded<'a, T: 'a>(
        &'a self,
        operation: impl Future<Output = Result<T>> + 'a,
    ) -> impl Future<Output = Result<T>> + 'a {
        // A combinator, not an `async fn`: one taking `operation` would
        // store that future twice (argument and awaited copy), and a
        // session read would move kilobytes.
        match self.ensure_available() {
            Err(error) => Either::Left(ready(Err(error))),
            Ok(()) => Either::Right(operation.map(move |result| {
                let result = result.map_err(redact);
                self.ensure_available()?;
                result
            })),
        }
    }

    /// Creates a session for `user_id` with a new random id.
    pub async fn create(&self, user_id: &str, data: Map<String, Value>) -> Result<Session> {
        self.guarded(self.create_inner(user_id, data)).await
    }

    /// The session, or `None` when it does not exist or has expired. With
    /// rolling expiry the read extends its lifetime (one `GETEX`).
    pub async fn get(&self, id: &SessionId) -> Result<Option<Session>> {
        self.guarded(self.get_inner(id)).await
    }

    /// Extends the session's lifetime; false when it does not exist.
    pub async fn touch(&self, id: &SessionId) -> Result<bool> {
        self.guarded(self.touch_inner(id)).await
    }

    /// Applies `update` to the session's data and returns the result; `None`
    /// when the session does not exist. Concurrent updates are merged key by
    /// key (optimistic concurrency on a version number, retried on
    /// conflict): keys changed by another writer are kept; for a key both
    /// change, the last write wins.
    pub async fn update(&self, id: &SessionId, update: &SessionUpdate) -> Result<Option<Session>> {
        self.guarded(self.update_inner(id, update)).await
    }

    /// Ends the session; false when it did not exist. During an outage
    /// (fallback mode) the destroy is also journaled and replayed on Redis
    /// before Redis serves again; if the journal is full this fails with
    /// [`Error::JournalFull`] (the logout would not survive recovery).
    pub async fn destroy(&self, id: &SessionId) -> Result<bool> {
        let destroyed = self.guarded(self.destroy_inner(id)).await?;
        self.inner.store.record_for_recovery(
            format!("session:{:016x}", local::digest(id)),
            replay_destroy(id.clone()),
        )?;
        Ok(destroyed)
    }

    /// Moves the session to a new id (same user and data) and ends the old
    /// one: call it at login against session fixation. `None` when the
    /// session does not exist.
    pub async fn cycle_id(&self, id: &SessionId) -> Result<Option<Session>> {
        self.guarded(self.cycle_id_inner(id)).await
    }

    /// Every live session of `user_id`, oldest first; index entries of
    /// expired sessions are removed on the way.
    pub async fn list(&self, user_id: &str) -> Result<Vec<Session>> {
        self.guarded(self.list_inner(user_id)).await
    }

    /// Ends every session of `user_id`, on every instance sharing the store;
    /// returns how many there were.
    ///
    /// During an outage (fallback mode) it is also journaled like
    /// [`Sessions::destroy`].
    pub async fn destroy_all(&self, user_id: &str) -> Result<u64> {
        let destroyed = self.guarded(self.destroy_all_inner(user_id)).await?;
        self.inner.store.record_for_recovery(
            format!("sessions-of:{user_id}"),
            replay_destroy_all(user_id.to_owned()),
        )?;
        Ok(destroyed)
    }

    fn ensure_available(&self) -> Result<()> {
        if self.inner.config.fail_closed && self.inner.store.is_degraded() {
            return Err(Error::Unavailable {
                state: ConnectionState::Degraded,
            });
        }
        Ok(())
    }

    async fn create_inner(&self, user_id: &str, data: Map<String, Value>) -> Result<Session> {
        validate_user(user_id)?;
        let created = SystemClock.now_ms();
        let absolute = self
            .inner
            .config
            .absolute_max
            .map(|max| created + millis(max).max(1));
        self.insert(user_id, data, created, absolute).await
    }

    async fn insert(
        &self,
        user_id: &str,
        data: Map<String, Value>,
        created: u64,
        absolute: Option<u64>,
    ) -> Result<Session> {
        let stored = Stored {
            user_id: user_id.to_owned(),
            data,
            created_ms: created,
            absolute_ms: absolute,
        };
        let encoded = encode(0, &stored)?;
        let ttl = self.lifetime(absolute)?;
        let tag = user_tag(user_id);
        for _ in 0..ID_ATTEMPTS {
            let id = SessionId::generate_tagged(&tag)?;
            let keys = [session_key(&id), index_key(user_id)];
            let args = [
                ScriptArg::Bytes(encoded.clone()),
                ScriptArg::millis(ttl),
                ScriptArg::Bytes(Bytes::copy_from_slice(id.expose().as_bytes())),
                ScriptArg::millis(self.index_ttl()),
            ];
            let created_now = self
                .inner
                .store
                .run_script(&CREATE, &[&keys[0], &keys[1]], &args)
                .await?;
            if created_now == ScriptValue::Int(1) {
                self.inner.refreshed.insert(user_id.to_owned(), ());
                return Ok(Session {
                    id,
                    user_id: stored.user_id,
                    data: stored.data,
                    created_at_ms: created,
                    absolute_expiry_ms: absolute,
                    version: 0,
                });
            }
        }
        Err(Error::IdCollision {
            what: "session id",
            attempts: ID_ATTEMPTS,
        })
    }

    /// How long a session may live from now: the inactivity TTL, capped by
    /// its absolute end. An error when that end has passed.
    fn lifetime(&self, absolute: Option<u64>) -> Result<Duration> {
        match absolute {
            None => Ok(self.inner.config.ttl),
            Some(end) => {
                let left = end.saturating_sub(SystemClock.now_ms());
                if left == 0 {
                    return Err(Error::SessionLifetimeOver);
                }
                Ok(self.inner.config.ttl.min(Duration::from_millis(left)))
            }
        }
    }

    async fn get_inner(&self, id: &SessionId) -> Result<Option<Session>> {
        let cache = &*self.inner.cache;
        let extend = self.inner.config.rolling && !self.inner.touched.recently(id);
        let epoch = match local::before_load(cache, id, extend) {
            Ok(cached) => return Ok(Some(cached)),
            Err(epoch) => epoch,
        };
        let loaded = self.load(id, extend).await;
        local::after_load(cache, id, loaded, epoch)
    }

    /// Forgets `change` in this instance's cache and announces it to the
    /// others (nothing to do without a local cache).
    async fn announce(&self, change: SessionChange) {
        if self.inner.cache.forget(&change) {
            local::announce(&self.inner.store, &change).await;
        }
    }

    async fn touch_inner(&self, id: &SessionId) -> Result<bool> {
        Ok(self.load(id, true).await?.is_some())
    }

    /// Reads the session. With `extend`, resets its lifetime in the same
    /// command (`GETEX`), capped by its absolute end, and keeps the user's
    /// index alive as long as the session. A session past its absolute end is
    /// destroyed; one that does not decode is deleted.
    async fn load(&self, id: &SessionId, extend: bool) -> Result<Option<Session>> {
        let key = session_key(id);
        let store = &self.inner.store;
        let raw = if extend {
            store.get_and_expire(&key, self.inner.config.ttl).await?
        } else {
            self.inner.reads.get(store, &key).await?
        };
        let Some(raw) = raw else {
            return Ok(None);
        };
        // Only sessions that exist: ids made up by a client must not fill
        // the memo.
        if extend {
            self.inner.touched.mark(id);
        }
        // The rare follow-ups below are boxed: their futures (scripts,
        // announcements) are many times the size of the read's, and every
        // read would otherwise carry and move their space.
        let Some(session) = decode(id, &raw) else {
            tracing::warn!("a stored session does not decode; deleting it");
            Box::pin(store.delete(&[&key])).await?;
            return Ok(None);
        };
        if let Some(end) = session.absolute_expiry_ms {
            let left = Duration::from_millis(end.saturating_sub(SystemClock.now_ms()));
            if left.is_zero() {
                Box::pin(self.destroy_known(&session)).await?;
                return Ok(None);
            }
            if extend && left < self.inner.config.ttl {
                Box::pin(store.expire(&key, left)).await?;
            }
        }
        if extend && !self.inner.refreshed.contains_key(&session.user_id) {
            Box::pin(self.refresh_index(&session.user_id)).await?;
        }
        Ok(Some(session))
    }

    /// Extends the lifetime of `user_id`'s session index (when it was not
    /// extended recently).
    async fn refresh_index(&self, user_id: &str) -> Result<()> {
        self.inner
            .store
            .expire(&index_key(user_id), self.index_ttl())
            .await?;
        self.inner.refreshed.insert(user_id.to_owned(), ());
        Ok(())
    }

    async fn update_inner(
        &self,
        id: &SessionId,
        update: &SessionUpdate,
    ) -> Result<Option<Session>> {
        let key = session_key(id);
        // Writers of one session in this instance queue here, so the
        // version check below only ever loses to another instance — never
        // to a sibling task, which would turn every burst of local updates
        // into retries.
        let _writer = self.inner.writers.lock(id).await;
        for attempt in 0..MAX_UPDATE_ATTEMPTS {
            let Some(raw) = self.inner.store.get(&key).await? else {
                return Ok(None);
            };
            let Some(mut session) = decode(id, &raw) else {
                return Ok(None);
            };
            update.apply(&mut session.data);
            let stored = Stored {
                user_id: session.user_id.clone(),
                data: session.data.clone(),
                created_ms: session.created_at_ms,
                absolute_ms: session.absolute_expiry_ms,
            };
            let encoded = encode(session.version + 1, &stored)?;
            // Zero keeps the key's TTL (`KEEPTTL`).
            let ttl = if self.inner.config.rolling {
                ScriptArg::millis(self.lifetime(session.absolute_expiry_ms)?)
            } else {
                ScriptArg::Int(0)
            };
            let args = [
                ScriptArg::Bytes(Bytes::from(session.version.to_string())),
                ScriptArg::Bytes(encoded),
                ttl,
            ];
            // Read-modify-write made safe by the version: the script writes
            // only if nobody wrote since our read, so no key set by another
            // writer is lost.
            match self
                .inner
                .store
                .run_script(&SAVE_IF_VERSION, &[&key], &args)
                .await?
            {
                ScriptValue::Int(1) => {
                    session.version += 1;
                    // Announced after the write: another instance evicting
                    // earlier could reload the old value and keep it.
                    self.announce(SessionChange::Session(local::digest(id)))
                        .await;
                    return Ok(Some(session));
                }
                ScriptValue::Int(-1) => return Ok(None),
                // Another instance wrote in between: back off a little,
                // with jitter so the contenders spread out.
                _ => tokio::time::sleep(conflict_backoff(attempt)).await,
            }
        }
        Err(Error::SessionConflict {
            attempts: MAX_UPDATE_ATTEMPTS,
        })
    }

    async fn destroy_inner(&self, id: &SessionId) -> Result<bool> {
        let key = session_key(id);
        let Some(raw) = self.inner.store.get(&key).await? else {
            // Not in this store (it may live in Redis while the fallback
            // serves): no copy kept here may stand in for it any more.
            self.announce(SessionChange::Session(local::digest(id)))
                .await;
            return Ok(false);
        };
        match decode(id, &raw) {
            Some(session) => self.destroy_known(&session).await,
            None => Ok(self.inner.store.delete(&[&key]).await? > 0),
        }
    }

    async fn destroy_known(&self, session: &Session) -> Result<bool> {
        let keys = [session_key(&session.id), index_key(&session.user_id)];
        let args = [ScriptArg::Bytes(Bytes::copy_from_slice(
            session.id.expose().as_bytes(),
        ))];
        let deleted = self
            .inner
            .store
            .run_script(&DESTROY, &[&keys[0], &keys[1]], &args)
            .await?;
        self.announce(SessionChange::Session(local::digest(&session.id)))
            .await;
        Ok(deleted == ScriptValue::Int(1))
    }

    async fn cycle_id_inner(&self, id: &SessionId) -> Result<Option<Session>> {
        let Some(raw) = self.inner.store.get(&session_key(id)).await? else {
            return Ok(None);
        };
        let Some(old) = decode(id, &raw) else {
            return Ok(None);
        };
        let new = self
            .insert(
                &old.user_id,
                old.data.clone(),
                old.created_at_ms,
                old.absolute_expiry_ms,
            )
            .await?;
        self.destroy_known(&old).await?;
        Ok(Some(new))
    }

    async fn list_inner(&self, user_id: &str) -> Result<Vec<Session>> {
        validate_user(user_id)?;
        let index = index_key(user_id);
        let ids = self.inner.store.set_members(&index).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut parsed = Vec::with_capacity(ids.len());
        let mut stale = Vec::new();
        for raw_id in &ids {
            match SessionId::parse(raw_id) {
                Some(id) => parsed.push((raw_id.as_str(), id)),
                None => stale.push(raw_id.as_str()),
            }
        }
        let keys: Vec<String> = parsed.iter().map(|(_, id)| session_key(id)).collect();
        let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let values = self.inner.store.get_many(&key_refs).await?;
        let mut sessions = Vec::new();
        for ((raw_id, id), value) in parsed.into_iter().zip(values) {
            let session = value
                .and_then(|raw| decode(&id, &raw))
                .filter(|session| session.user_id == user_id);
            match session {
                Some(session) => sessions.push(session),
                None => stale.push(raw_id),
            }
        }
        if !stale.is_empty() {
            self.inner.store.set_remove(&index, &stale).await?;
        }
        sessions.sort_by_key(|session| session.created_at_ms);
        Ok(sessions)
    }

    async fn destroy_all_inner(&self, user_id: &str) -> Result<u64> {
        validate_user(user_id)?;
        let index = index_key(user_id);
        let ids = self.inner.store.set_members(&index).await?;
        let mut keys: Vec<String> = ids.iter().filter_map(|id| raw_session_key(id)).collect();
        keys.push(index);
        let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let deleted = self.inner.store.delete(&key_refs).await?;
        self.announce(SessionChange::User(user_id.to_owned())).await;
        Ok(deleted.saturating_sub(u64::from(!ids.is_empty())))
    }
}

/// The replay of a destroy made during an outage: the same destroy on Redis,
/// announced to every instance's local cache.
fn replay_destroy(id: SessionId) -> Replay {
    Replay::new(move |redis: RedisStore| {
        let id = id.clone();
        async move {
            let key = session_key(&id);
            if let Some(raw) = redis.get(&key).await? {
                match decode(&id, &raw) {
                    Some(session) => {
                        let index = index_key(&session.user_id);
                        let args = [ScriptArg::Bytes(Bytes::copy_from_slice(
                            id.expose().as_bytes(),
                        ))];
                        redis.run_script(&DESTROY, &[&key, &index], &args).await?;
                    }
                    None => {
                        redis.delete(&[&key]).await?;
                    }
                }
            }
            local::announce(&redis, &SessionChange::Session(local::digest(&id))).await;
            Ok(())
        }
    })
}

/// The replay of a destroy-all made during an outage: every session in the
/// user's index on Redis, and the index.
fn replay_destroy_all(user_id: String) -> Replay {
    Replay::new(move |redis: RedisStore| {
        let user_id = user_id.clone();
        async move {
            let index = index_key(&user_id);
            let ids = redis.set_members(&index).await?;
            let mut keys: Vec<String> = ids.iter().filter_map(|id| raw_session_key(id)).collect();
            keys.push(index);
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            redis.delete(&refs).await?;
            local::announce(&redis, &SessionChange::User(user_id)).await;
            Ok(())
        }
    })
}
