//! The native session API.

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::local::{self, Change, LocalSessions};
use super::{SessionConfig, SessionId};
use crate::connection::ConnectionState;
use crate::error::{Error, Result};
use crate::store::{AnyStore, KeyTtl, Script, ScriptArg, ScriptContext, ScriptValue, Store};

/// Largest accepted encoded session, in bytes.
const MAX_SESSION_BYTES: usize = 1024 * 1024;
/// Longest accepted user id, in bytes.
const MAX_USER_ID_LEN: usize = 256;
/// Attempts of a conflicting concurrent update before giving up.
const MAX_UPDATE_ATTEMPTS: usize = 16;

/// A session as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// The id (a secret: `Debug` hides it).
    pub id: SessionId,
    /// The user it belongs to.
    pub user_id: String,
    /// Application data.
    pub data: Map<String, Value>,
    /// Creation time, ms since the UNIX epoch.
    pub created_at_ms: u64,
    /// Absolute end of life, ms since the UNIX epoch, when configured.
    pub absolute_expiry_ms: Option<u64>,
    version: u64,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    user_id: String,
    data: Map<String, Value>,
    created_ms: u64,
    absolute_ms: Option<u64>,
}

/// Changes to apply to a session's data; keys not named are left as they are,
/// so concurrent updates of different keys never lose each other's writes.
#[derive(Debug, Clone, Default, PartialEq)]
#[must_use]
pub struct SessionUpdate {
    set: Map<String, Value>,
    remove: Vec<String>,
}

impl SessionUpdate {
    /// No changes yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `value`.
    pub fn set(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.set.insert(key.into(), value.into());
        self
    }

    /// Removes `key`.
    pub fn remove(mut self, key: impl Into<String>) -> Self {
        self.remove.push(key.into());
        self
    }

    fn apply(&self, data: &mut Map<String, Value>) {
        for key in &self.remove {
            data.remove(key);
        }
        for (key, value) in &self.set {
            data.insert(key.clone(), value.clone());
        }
    }
}

/// Creates the session (SET NX) and adds it to the user's index, atomically.
static CREATE: LazyLock<Script> = LazyLock::new(|| {
    fn native(ctx: &mut dyn ScriptContext, args: &[ScriptArg]) -> Result<ScriptValue> {
        if ctx.get(0)?.is_some() {
            return Ok(ScriptValue::Int(0));
        }
        let value = bytes_arg(args, 0);
        ctx.set(0, value, Some(millis_arg(args, 1)))?;
        let id = String::from_utf8_lossy(&bytes_arg(args, 2)).into_owned();
        ctx.set_add(1, &[&id])?;
        ctx.expire(1, millis_arg(args, 3))?;
        Ok(ScriptValue::Int(1))
    }
    Script::new(
        "redkit_session_create",
        r"
if redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'NX') then
  redis.call('SADD', KEYS[2], ARGV[3])
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
  return 1
end
return 0
",
        native,
    )
});

/// Writes the session only if its version is still the expected one.
/// Returns 1 when written, 0 on a version conflict, -1 when it is gone.
static SAVE_IF_VERSION: LazyLock<Script> = LazyLock::new(|| {
    fn native(ctx: &mut dyn ScriptContext, args: &[ScriptArg]) -> Result<ScriptValue> {
        let Some(current) = ctx.get(0)? else {
            return Ok(ScriptValue::Int(-1));
        };
        let expected = bytes_arg(args, 0);
        if version_prefix(&current) != Some(&expected[..]) {
            return Ok(ScriptValue::Int(0));
        }
        let ttl = match args.get(2).and_then(ScriptArg::as_i64) {
            Some(ms) if ms > 0 => Some(Duration::from_millis(ms.unsigned_abs())),
            _ => match ctx.ttl(0)? {
                KeyTtl::ExpiresIn(left) => Some(left.max(Duration::from_millis(1))),
                _ => None,
            },
        };
        ctx.set(0, bytes_arg(args, 1), ttl)?;
        Ok(ScriptValue::Int(1))
    }
    Script::new(
        "redkit_session_save_if_version",
        r"
local current = redis.call('GET', KEYS[1])
if not current then return -1 end
if string.match(current, '^(%d+)|') ~= ARGV[1] then return 0 end
if tonumber(ARGV[3]) > 0 then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
end
return 1
",
        native,
    )
});

/// Deletes the session and removes it from the user's index.
static DESTROY: LazyLock<Script> = LazyLock::new(|| {
    fn native(ctx: &mut dyn ScriptContext, args: &[ScriptArg]) -> Result<ScriptValue> {
        let existed = ctx.delete(0)?;
        let id = String::from_utf8_lossy(&bytes_arg(args, 0)).into_owned();
        ctx.set_remove(1, &[&id])?;
        Ok(ScriptValue::Int(i64::from(existed)))
    }
    Script::new(
        "redkit_session_destroy",
        "local n = redis.call('DEL', KEYS[1]); redis.call('SREM', KEYS[2], ARGV[1]); return n",
        native,
    )
});

fn bytes_arg(args: &[ScriptArg], index: usize) -> Bytes {
    match args.get(index) {
        Some(ScriptArg::Bytes(bytes)) => bytes.clone(),
        Some(ScriptArg::Int(value)) => Bytes::from(value.to_string()),
        None => Bytes::new(),
    }
}

fn millis_arg(args: &[ScriptArg], index: usize) -> Duration {
    Duration::from_millis(
        args.get(index)
            .and_then(ScriptArg::as_i64)
            .unwrap_or(1)
            .max(1)
            .unsigned_abs(),
    )
}

fn version_prefix(stored: &[u8]) -> Option<&[u8]> {
    let end = stored.iter().position(|b| *b == b'|')?;
    let prefix = &stored[..end];
    (!prefix.is_empty() && prefix.iter().all(u8::is_ascii_digit)).then_some(prefix)
}

fn conflict_backoff(attempt: usize) -> Duration {
    let cap_ms = 1u64 << attempt.min(6);
    Duration::from_micros(fastrand::u64(0..=cap_ms * 500))
}

pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis())
        .unwrap_or(i64::MAX)
        .max(1)
}

/// Sessions on a [`Store`]: create, get, update, destroy, touch, cycle ids,
/// list and destroy per user. Clones share state.
///
/// Keys: `sess:s:<id>` holds `<version>|<json>`; `sess:u:<user>` is the set of
/// the user's session ids. The index is cleaned on every write and listing
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
    /// The in-process cache, when [`SessionConfig::local_cache`] is set.
    local: Option<Arc<LocalSessions>>,
}

/// Striped async locks keyed by session id: bounded memory, and two
/// updates of one session in this process never conflict with each other.
struct WriterLocks {
    hasher: std::hash::RandomState,
    stripes: Vec<tokio::sync::Mutex<()>>,
}

impl WriterLocks {
    const STRIPES: usize = 64;

    fn new() -> Self {
        WriterLocks {
            hasher: std::hash::RandomState::new(),
            stripes: (0..Self::STRIPES).map(|_| Default::default()).collect(),
        }
    }

    async fn lock(&self, id: &SessionId) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::BuildHasher;
        let hash = self.hasher.hash_one(id.expose());
        self.stripes[hash as usize % Self::STRIPES].lock().await
    }
}

/// Which sessions were extended recently: a sharded map of id hashes to the
/// time of extension. Cheaper than a general cache on the read path.
struct TouchMemo {
    interval: Duration,
    hasher: std::hash::RandomState,
    shards: Vec<parking_lot::Mutex<std::collections::HashMap<u64, Instant>>>,
}

impl TouchMemo {
    const SHARDS: usize = 16;
    const PRUNE_ABOVE: usize = 65_536;

    fn new(interval: Duration) -> Self {
        TouchMemo {
            interval,
            hasher: std::hash::RandomState::new(),
            shards: (0..Self::SHARDS).map(|_| Default::default()).collect(),
        }
    }

    fn slot(
        &self,
        id: &SessionId,
    ) -> (
        u64,
        &parking_lot::Mutex<std::collections::HashMap<u64, Instant>>,
    ) {
        use std::hash::BuildHasher;
        let hash = self.hasher.hash_one(id.expose());
        (hash, &self.shards[hash as usize % Self::SHARDS])
    }

    fn recently(&self, id: &SessionId) -> bool {
        if self.interval.is_zero() {
            return false;
        }
        let (hash, shard) = self.slot(id);
        shard
            .lock()
            .get(&hash)
            .is_some_and(|at| at.elapsed() < self.interval)
    }

    fn mark(&self, id: &SessionId) {
        if self.interval.is_zero() {
            return;
        }
        let (hash, shard) = self.slot(id);
        let mut shard = shard.lock();
        if shard.len() > Self::PRUNE_ABOVE {
            shard.retain(|_, at| at.elapsed() < self.interval);
        }
        shard.insert(hash, Instant::now());
    }
}

impl<S: Store> std::fmt::Debug for Sessions<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("config", &self.inner.config)
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
        let local = if config.local_cache.is_zero() {
            None
        } else {
            if tokio::runtime::Handle::try_current().is_err() {
                return Err(Error::invalid_config(
                    "session local_cache",
                    "set outside a Tokio runtime",
                    "Sessions built inside a Tokio runtime, or a zero local_cache",
                ));
            }
            Some(LocalSessions::start(
                store.clone(),
                config.local_cache,
                config.local_fail_safe,
            ))
        };
        Ok(Sessions {
            inner: Arc::new(SessionsInner {
                store,
                config,
                refreshed,
                touched,
                writers: WriterLocks::new(),
                local,
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.inner.config
    }

    fn session_key(id: &SessionId) -> String {
        let mut key = String::with_capacity(7 + id.expose().len());
        key.push_str("sess:s:");
        key.push_str(id.expose());
        key
    }

    fn index_key(user_id: &str) -> String {
        format!("sess:u:{user_id}")
    }

    fn index_ttl(&self) -> Duration {
        self.inner.config.ttl + self.inner.config.index_refresh
    }

    /// Runs `operation` unless sessions fail closed and the store is serving
    /// from its fallback; also fails closed when the fallback took over during
    /// the call (a write made there stays local and is cleared on recovery).
    async fn guarded<T>(
        &self,
        operation: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        self.ensure_available()?;
        let result = operation.await.map_err(redact);
        self.ensure_available()?;
        result
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

    /// Ends the session; false when it did not exist.
    pub async fn destroy(&self, id: &SessionId) -> Result<bool> {
        self.guarded(self.destroy_inner(id)).await
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
    pub async fn destroy_all(&self, user_id: &str) -> Result<u64> {
        self.guarded(self.destroy_all_inner(user_id)).await
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
        let created = now_ms();
        let absolute = self
            .inner
            .config
            .absolute_max
            .map(|max| created + ms(max).unsigned_abs());
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
        for _ in 0..4 {
            let id = SessionId::generate()?;
            let keys = [Self::session_key(&id), Self::index_key(user_id)];
            let args = [
                ScriptArg::Bytes(encoded.clone()),
                ScriptArg::Int(ms(ttl)),
                ScriptArg::Bytes(Bytes::copy_from_slice(id.expose().as_bytes())),
                ScriptArg::Int(ms(self.index_ttl())),
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
        Err(Error::invalid_input(
            "session id",
            "four random 256-bit ids collided; the random generator is broken",
        ))
    }

    /// How long a session may live from now: the inactivity TTL, capped by
    /// its absolute end. An error when that end has passed.
    fn lifetime(&self, absolute: Option<u64>) -> Result<Duration> {
        match absolute {
            None => Ok(self.inner.config.ttl),
            Some(end) => {
                let left = end.saturating_sub(now_ms());
                if left == 0 {
                    return Err(Error::invalid_input(
                        "session",
                        "its absolute lifetime is over",
                    ));
                }
                Ok(self.inner.config.ttl.min(Duration::from_millis(left)))
            }
        }
    }

    async fn get_inner(&self, id: &SessionId) -> Result<Option<Session>> {
        let extend = self.inner.config.rolling && !self.inner.touched.recently(id);
        let Some(local) = &self.inner.local else {
            return self.load(id, extend).await;
        };
        // A due extension goes to the store, so rolling expiry still works.
        if !extend && let Some(session) = local.get(id) {
            return Ok(Some(session));
        }
        let epoch = local.epoch();
        let loaded = match self.load(id, extend).await {
            Ok(loaded) => loaded,
            Err(error) if error.is_unavailable() => {
                return match local.get_fail_safe(id) {
                    Some(session) => {
                        tracing::debug!(
                            "session store unavailable; serving a session read earlier"
                        );
                        Ok(Some(session))
                    }
                    None => Err(error),
                };
            }
            Err(error) => return Err(error),
        };
        if let Some(session) = &loaded {
            local.put(session, epoch);
        }
        Ok(loaded)
    }

    /// Forgets `change` in this instance's cache and announces it to the
    /// others (no-op without a local cache).
    async fn announce(&self, change: Change) {
        if let Some(cache) = &self.inner.local {
            local::announce(cache, &self.inner.store, change).await;
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
        let key = Self::session_key(id);
        let store = &self.inner.store;
        let raw = if extend {
            store.get_and_expire(&key, self.inner.config.ttl).await?
        } else {
            store.get(&key).await?
        };
        if extend {
            self.inner.touched.mark(id);
        }
        let Some(raw) = raw else {
            return Ok(None);
        };
        let Some(session) = decode(id, &raw) else {
            tracing::warn!("a stored session does not decode; deleting it");
            store.delete(&[&key]).await?;
            return Ok(None);
        };
        if let Some(end) = session.absolute_expiry_ms {
            let left = Duration::from_millis(end.saturating_sub(now_ms()));
            if left.is_zero() {
                self.destroy_known(&session).await?;
                return Ok(None);
            }
            if extend && left < self.inner.config.ttl {
                store.expire(&key, left).await?;
            }
        }
        if extend {
            self.refresh_index(&session.user_id).await?;
        }
        Ok(Some(session))
    }

    async fn refresh_index(&self, user_id: &str) -> Result<()> {
        if self.inner.refreshed.contains_key(user_id) {
            return Ok(());
        }
        self.inner
            .store
            .expire(&Self::index_key(user_id), self.index_ttl())
            .await?;
        self.inner.refreshed.insert(user_id.to_owned(), ());
        Ok(())
    }

    async fn update_inner(
        &self,
        id: &SessionId,
        update: &SessionUpdate,
    ) -> Result<Option<Session>> {
        let key = Self::session_key(id);
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
            let ttl = if self.inner.config.rolling {
                ms(self.lifetime(session.absolute_expiry_ms)?)
            } else {
                0
            };
            let args = [
                ScriptArg::Bytes(Bytes::from(session.version.to_string())),
                ScriptArg::Bytes(encoded),
                ScriptArg::Int(ttl),
            ];
            match self
                .inner
                .store
                .run_script(&SAVE_IF_VERSION, &[&key], &args)
                .await?
            {
                ScriptValue::Int(1) => {
                    session.version += 1;
                    self.announce(Change::Session(local::digest(id))).await;
                    return Ok(Some(session));
                }
                ScriptValue::Int(-1) => return Ok(None),
                // Another instance wrote in between: back off a little,
                // with jitter so the contenders spread out.
                _ => tokio::time::sleep(conflict_backoff(attempt)).await,
            }
        }
        Err(Error::invalid_input(
            "session update",
            format!("{MAX_UPDATE_ATTEMPTS} concurrent writers kept conflicting; retry"),
        ))
    }

    async fn destroy_inner(&self, id: &SessionId) -> Result<bool> {
        let key = Self::session_key(id);
        let Some(raw) = self.inner.store.get(&key).await? else {
            return Ok(false);
        };
        match decode(id, &raw) {
            Some(session) => self.destroy_known(&session).await,
            None => Ok(self.inner.store.delete(&[&key]).await? > 0),
        }
    }

    async fn destroy_known(&self, session: &Session) -> Result<bool> {
        let keys = [
            Self::session_key(&session.id),
            Self::index_key(&session.user_id),
        ];
        let args = [ScriptArg::Bytes(Bytes::copy_from_slice(
            session.id.expose().as_bytes(),
        ))];
        let deleted = self
            .inner
            .store
            .run_script(&DESTROY, &[&keys[0], &keys[1]], &args)
            .await?;
        self.announce(Change::Session(local::digest(&session.id)))
            .await;
        Ok(deleted == ScriptValue::Int(1))
    }

    async fn cycle_id_inner(&self, id: &SessionId) -> Result<Option<Session>> {
        let Some(raw) = self.inner.store.get(&Self::session_key(id)).await? else {
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
        let index = Self::index_key(user_id);
        let ids = self.inner.store.set_members(&index).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| format!("sess:s:{id}")).collect();
        let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let values = self.inner.store.get_many(&key_refs).await?;
        let mut sessions = Vec::new();
        let mut stale = Vec::new();
        for (raw_id, value) in ids.iter().zip(values) {
            let session = SessionId::parse(raw_id)
                .zip(value)
                .and_then(|(id, raw)| decode(&id, &raw))
                .filter(|session| session.user_id == user_id);
            match session {
                Some(session) => sessions.push(session),
                None => stale.push(raw_id.as_str()),
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
        let index = Self::index_key(user_id);
        let ids = self.inner.store.set_members(&index).await?;
        let mut keys: Vec<String> = ids.iter().map(|id| format!("sess:s:{id}")).collect();
        keys.push(index);
        let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let deleted = self.inner.store.delete(&key_refs).await?;
        self.announce(Change::User(user_id.to_owned())).await;
        Ok(deleted.saturating_sub(u64::from(!ids.is_empty())))
    }
}

/// Errors that name a key would name a session id (a bearer secret): hide it.
pub(super) fn redact(error: Error) -> Error {
    match error {
        Error::WrongType { expected, .. } => Error::WrongType {
            key: "<session key>".to_owned(),
            expected,
        },
        other => other,
    }
}

fn validate_user(user_id: &str) -> Result<()> {
    if user_id.is_empty()
        || user_id.len() > MAX_USER_ID_LEN
        || user_id.chars().any(char::is_control)
    {
        return Err(Error::invalid_input(
            "session user id",
            format!("expected 1 to {MAX_USER_ID_LEN} printable characters"),
        ));
    }
    Ok(())
}

fn encode(version: u64, stored: &Stored) -> Result<Bytes> {
    let json = serde_json::to_vec(stored).map_err(|source| Error::Encode {
        key: "session".to_owned(),
        source: Box::new(source),
    })?;
    let mut out = Vec::with_capacity(json.len() + 21);
    out.extend_from_slice(version.to_string().as_bytes());
    out.push(b'|');
    out.extend_from_slice(&json);
    if out.len() > MAX_SESSION_BYTES {
        return Err(Error::invalid_input(
            "session data",
            format!(
                "it encodes to {} bytes; at most {MAX_SESSION_BYTES} are allowed",
                out.len()
            ),
        ));
    }
    Ok(Bytes::from(out))
}

fn decode(id: &SessionId, raw: &[u8]) -> Option<Session> {
    let prefix = version_prefix(raw)?;
    let version = std::str::from_utf8(prefix).ok()?.parse().ok()?;
    let stored: Stored = serde_json::from_slice(&raw[prefix.len() + 1..]).ok()?;
    Some(Session {
        id: id.clone(),
        user_id: stored.user_id,
        data: stored.data,
        created_at_ms: stored.created_ms,
        absolute_expiry_ms: stored.absolute_ms,
        version,
    })
}
