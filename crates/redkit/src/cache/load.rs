//! `get_or_set`: cache-aside with single-flight, stale-while-revalidate,
//! fail-safe, soft/hard timeouts and an optional cross-instance lock.

use std::any::Any;
use std::future::Future;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::engine::Found;
use super::flight::{Landing, owned_error};
use super::handle::Cache;
use super::options::{EntryOptions, Loaded};
use crate::clock::millis;
use crate::error::{BoxError, Error, Result};
use crate::store::{Script, ScriptArg, ScriptContext, ScriptValue, Store};

/// Deletes the lock only if it still holds our token.
static RELEASE_LOCK: LazyLock<Script> = LazyLock::new(|| {
    fn native(ctx: &mut dyn ScriptContext, args: &[ScriptArg]) -> Result<ScriptValue> {
        let token = match args.first() {
            Some(ScriptArg::Bytes(token)) => token.clone(),
            _ => Bytes::new(),
        };
        if ctx.get(0)?.as_ref() == Some(&token) {
            ctx.delete(0)?;
            Ok(ScriptValue::Int(1))
        } else {
            Ok(ScriptValue::Int(0))
        }
    }
    Script::new(
        "redkit_cache_release_lock",
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end",
        native,
    )
});

/// How often a waiter checks for the value another instance is loading.
const LOCK_POLL: Duration = Duration::from_millis(20);

impl<S: Store> Cache<S> {
    /// The value of `key`, loading and caching it with `loader` when it is
    /// missing. See [`Cache::get_or_set_with`] for everything it does.
    pub async fn get_or_set<T, F, Fut, E>(
        &self,
        key: &str,
        options: &EntryOptions,
        loader: F,
    ) -> Result<T>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<T, E>> + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        self.get_or_set_with(key, options, move || async move {
            loader().await.map(Loaded::new)
        })
        .await
    }

    /// Like [`Cache::get_or_set`], with a loader that decides how (or
    /// whether) its result is cached through [`Loaded`].
    ///
    /// - a fresh value (L1, then L2) is returned at once;
    /// - a stale value within the stale window is returned at once and
    ///   refreshed in the background;
    /// - otherwise the loader runs once per instance for all concurrent callers
    ///   (and once across instances with `distributed_lock`), bounded by the
    ///   hard timeout; with a stale value at hand and a soft timeout, callers
    ///   get the stale value after the soft timeout while loading goes on;
    /// - if the loader fails or times out, a stale value within the fail-safe
    ///   limit is returned instead of the error, and for the fail-safe
    ///   throttle ([`EntryOptions::fail_safe_throttle`]) that stale value is
    ///   served without calling the loader again.
    pub async fn get_or_set_with<T, F, Fut, E>(
        &self,
        key: &str,
        options: &EntryOptions,
        loader: F,
    ) -> Result<T>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<Loaded<T>, E>> + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        let engine = &self.engine;
        engine.check_key(key)?;
        engine.check_tags(&options.tags)?;
        let (found, from_l1) = engine.lookup::<T>(key, options.l1).await;
        let stale = match found {
            // Fresh at `lookup`'s own instant, as `Cache::get` judges it.
            Some(found) if found.fresh => {
                engine.counters.hit(from_l1);
                return Ok(found.value);
            }
            other => other,
        };
        engine.counters.misses(1);
        // Boxed: every hit would otherwise carry (and move) the space of
        // loading, which only a miss needs.
        Box::pin(self.miss(key, options, loader, stale)).await
    }

    /// `get_or_set_with` after a miss: `stale` is what L1 or L2 still kept.
    async fn miss<T, F, Fut, E>(
        &self,
        key: &str,
        options: &EntryOptions,
        loader: F,
        stale: Option<Found<T>>,
    ) -> Result<T>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<Loaded<T>, E>> + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        let engine = &self.engine;
        let now = engine.now_ms();
        if let Some(found) = &stale
            && now
                < found
                    .fresh_until
                    .saturating_add(millis(options.fail_safe_max))
            && engine.loader_throttled(key, now)
        {
            // The loader failed a moment ago: do not call it on every read.
            engine.counters.stale_served(1);
            return Ok(found.value.clone());
        }
        if let Some(found) = &stale
            && now
                < found
                    .fresh_until
                    .saturating_add(millis(options.stale_window))
        {
            engine.counters.stale_served(1);
            let cache = self.clone();
            let (key, options) = (key.to_owned(), options.clone());
            tokio::spawn(async move {
                let _ = cache
                    .load_once::<T, F, Fut, E>(&key, &options, loader)
                    .await;
            });
            return Ok(found.value.clone());
        }
        let landing = match (options.soft_timeout, &stale) {
            (Some(soft), Some(found)) => {
                match tokio::time::timeout(soft, self.load_once(key, options, loader)).await {
                    Ok(landing) => landing,
                    Err(_) => {
                        // The load goes on in its own task and will land in the cache.
                        engine.counters.stale_served(1);
                        return Ok(found.value.clone());
                    }
                }
            }
            _ => self.load_once(key, options, loader).await,
        };
        match landing {
            Ok(value) => match value.downcast_ref::<T>() {
                Some(value) => Ok(value.clone()),
                None => Err(Error::invalid_input(
                    "cache key",
                    format!("{key:?} is being loaded with another value type by a concurrent call"),
                )),
            },
            Err(error) => match stale {
                Some(found)
                    if engine.now_ms()
                        < found
                            .fresh_until
                            .saturating_add(millis(options.fail_safe_max)) =>
                {
                    engine.counters.stale_served(1);
                    let now = engine.now_ms();
                    engine.throttle_loader(
                        key,
                        now.saturating_add(millis(options.fail_safe_throttle)),
                    );
                    tracing::warn!(
                        cache = engine.layout.namespace(), key, error = %error,
                        "loader failed; serving the stale value (fail-safe)"
                    );
                    Ok(found.value)
                }
                _ => Err(owned_error(key, error)),
            },
        }
    }

    /// Joins the key's flight; the flyer loads in its own task, so that the
    /// load lands in the cache even if every caller stops waiting.
    async fn load_once<T, F, Fut, E>(&self, key: &str, options: &EntryOptions, loader: F) -> Landing
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<Loaded<T>, E>> + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        let cache = self.clone();
        let (owned_key, options) = (key.to_owned(), options.clone());
        self.engine
            .flights()
            .join(key, move || async move {
                let task =
                    tokio::spawn(
                        async move { cache.load_and_store(owned_key, options, loader).await },
                    );
                task.await.unwrap_or_else(|join| {
                    Err(Arc::new(Error::Loader {
                        key: String::new(),
                        source: Box::new(join),
                    }))
                })
            })
            .await
    }

    async fn load_and_store<T, F, Fut, E>(
        self,
        key: String,
        options: EntryOptions,
        loader: F,
    ) -> Landing
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<Loaded<T>, E>> + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        let engine = &self.engine;
        // Another flight may have landed between our lookup and this one.
        if let Some(value) = engine.landed::<T>(&key, options.l1).await {
            return Ok(Arc::new(value));
        }
        let lock = if options.distributed_lock {
            match self.lock_or_wait::<T>(&key, &options).await {
                LockOutcome::Loaded(value) => return Ok(Arc::new(value)),
                LockOutcome::Held(token) => Some(token),
                LockOutcome::Unavailable => None,
            }
        } else {
            None
        };
        // The tags' versions before loading: if one moves while the loader
        // runs, what it read may predate that invalidation, so it is not
        // cached (it would otherwise be stored with the new version).
        let tag_names: Vec<&str> = options.tags.iter().map(String::as_str).collect();
        let versions_before = if tag_names.is_empty() {
            None
        } else {
            engine
                .tags()
                .current(&engine.store, &engine.layout, &tag_names)
                .await
                .ok()
        };
        engine.counters.loader_calls(1);
        let started = Instant::now();
        let loaded = match options.hard_timeout {
            Some(limit) => match tokio::time::timeout(limit, loader()).await {
                Ok(result) => result.map_err(Into::into),
                Err(_) => Err(Box::new(Error::LoaderTimeout {
                    key: key.clone(),
                    after: limit,
                }) as BoxError),
            },
            None => loader().await.map_err(Into::into),
        };
        engine
            .counters
            .loader_duration
            .record(started.elapsed().as_secs_f64());
        let landing = match loaded {
            Ok(loaded) => {
                let invalidated_meanwhile = match (&versions_before, &loaded.tags) {
                    (Some(before), None) => engine
                        .tags()
                        .current(&engine.store, &engine.layout, &tag_names)
                        .await
                        .map_or(true, |now| &now != before),
                    _ => false,
                };
                if invalidated_meanwhile {
                    tracing::debug!(
                        cache = engine.layout.namespace(),
                        key,
                        "a tag was invalidated while loading; the value is returned, not cached"
                    );
                } else if loaded.cache {
                    let mut options = options.clone();
                    if let Some(ttl) = loaded.ttl {
                        options.ttl = ttl;
                    }
                    if let Some(tags) = loaded.tags.clone() {
                        options.tags = tags;
                    }
                    if let Err(error) = engine
                        .write(&[(key.as_str(), &loaded.value)], &options)
                        .await
                    {
                        tracing::warn!(cache = engine.layout.namespace(), key, error = %error, "loaded value not cached");
                    }
                }
                Ok(Arc::new(loaded.value) as Arc<dyn Any + Send + Sync>)
            }
            Err(error) => {
                engine.counters.loader_errors(1);
                Err(Arc::new(match error.downcast::<Error>() {
                    Ok(timeout) if matches!(*timeout, Error::LoaderTimeout { .. }) => *timeout,
                    Ok(other) => Error::Loader {
                        key: key.clone(),
                        source: other,
                    },
                    Err(source) => Error::Loader {
                        key: key.clone(),
                        source,
                    },
                }))
            }
        };
        if let Some(token) = lock {
            let lock_key = engine.layout.lock(&key);
            let args = [ScriptArg::Bytes(Bytes::from(token))];
            if let Err(error) = engine
                .store
                .run_script(&RELEASE_LOCK, &[&lock_key], &args)
                .await
            {
                tracing::debug!(cache = engine.layout.namespace(), error = %error, "lock release failed; it expires");
            }
        }
        landing
    }

    /// Takes the cross-instance loading lock, or waits for the instance that
    /// holds it to store the value.
    async fn lock_or_wait<T>(&self, key: &str, options: &EntryOptions) -> LockOutcome<T>
    where
        T: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let engine = &self.engine;
        let lock_key = engine.layout.lock(key);
        let token = format!("{}:{:016x}", engine.instance(), fastrand::u64(..));
        let lock_ttl = options
            .hard_timeout
            .unwrap_or(engine.lock_ttl())
            .max(Duration::from_millis(1));
        let deadline = Instant::now() + engine.lock_ttl();
        loop {
            match engine
                .store
                .set_if_absent(&lock_key, token.as_bytes(), Some(lock_ttl))
                .await
            {
                Ok(true) => return LockOutcome::Held(token),
                Ok(false) => {}
                Err(_) => return LockOutcome::Unavailable,
            }
            tokio::time::sleep(LOCK_POLL).await;
            if let Some(value) = engine.fresh::<T>(key, options.l1).await {
                return LockOutcome::Loaded(value);
            }
            if Instant::now() >= deadline {
                return LockOutcome::Unavailable;
            }
        }
    }
}

enum LockOutcome<T> {
    Held(String),
    Loaded(T),
    Unavailable,
}
