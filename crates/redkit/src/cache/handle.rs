//! The public cache handle: reads, writes and deletes; the machinery is in
//! `engine.rs`.

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::backplane::CacheChange;
use super::engine::Engine;
use super::options::EntryOptions;
use super::recovery::Apply;
use super::stats::CacheStats;
use crate::error::Result;
use crate::store::Store;

/// A multi-tier cache: L1 in process (quick_cache), L2 in the store (Redis or the
/// embedded store), coherent across instances. Clones share everything.
///
/// See the [module docs](super) for the behaviour.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> redkit::Result<()> {
/// use std::time::Duration;
///
/// let kit = redkit::Redkit::builder().build()?;
/// let tasks = kit.cache("tasks").build().await?;
/// let options = tasks.options().ttl(Duration::from_secs(60)).tag("user:42");
/// let list: Vec<String> = tasks
///     .get_or_set("user:42:tasks", &options, || async {
///         Ok::<_, std::io::Error>(vec!["write docs".to_owned()])
///     })
///     .await?;
/// assert_eq!(list, ["write docs"]);
/// tasks.invalidate_tag("user:42").await?; // on every instance
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// Reads and writes fail with [`Error::InvalidInput`](crate::Error::InvalidInput) for a key that is
/// empty, too long or holds control characters, with
/// [`Error::Loader`](crate::Error::Loader) when a loader fails and no stale
/// value may stand in, and with the store's error when L2 is unavailable
/// and nothing else can answer.
pub struct Cache<S: Store> {
    pub(super) engine: Arc<Engine<S>>,
}

impl<S: Store> Clone for Cache<S> {
    fn clone(&self) -> Self {
        Cache {
            engine: self.engine.clone(),
        }
    }
}

impl<S: Store> std::fmt::Debug for Cache<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("namespace", &self.engine.layout.namespace())
            .field("stats", &self.stats())
            .finish()
    }
}

impl<S: Store> Cache<S> {
    /// The cache's default options, to adjust for one call.
    pub fn options(&self) -> EntryOptions {
        self.engine.defaults().clone()
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        self.engine.layout.namespace()
    }

    /// Activity since the cache was built.
    pub fn stats(&self) -> CacheStats {
        self.engine.counters.snapshot()
    }

    /// The fresh value of `key`, or `None`. Stale values are not returned
    /// (use [`Cache::get_or_set`] for stale-while-revalidate and fail-safe).
    /// An unreachable L2 reads as a miss.
    pub async fn get<T>(&self, key: &str) -> Result<Option<T>>
    where
        T: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let engine = &self.engine;
        engine.check_key(key)?;
        let (found, from_l1) = engine.lookup::<T>(key, engine.defaults().l1).await;
        match found {
            // `lookup` only returns entries kept at its own `now`; freshness
            // is judged against the same instant.
            Some(found) if found.fresh => {
                engine.counters.hit(from_l1);
                Ok(Some(found.value))
            }
            _ => {
                engine.counters.misses(1);
                Ok(None)
            }
        }
    }

    /// Stores `value` under `key` with `options` (L2, then L1, then a
    /// backplane message).
    pub async fn set<T>(&self, key: &str, value: &T, options: &EntryOptions) -> Result<()>
    where
        T: Serialize + Clone + Send + Sync + 'static,
    {
        self.engine.write(&[(key, value)], options).await
    }

    /// Fresh values of `keys`, in order: L1 first (by the same rules as
    /// [`Cache::get`]), then one `MGET` for the rest.
    pub async fn get_many<T>(&self, keys: &[&str]) -> Result<Vec<Option<T>>>
    where
        T: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let engine = &self.engine;
        for key in keys {
            engine.check_key(key)?;
        }
        Ok(engine.read_many(keys).await)
    }

    /// Stores several values in one pipeline, with the same options.
    pub async fn set_many<T>(&self, entries: &[(&str, T)], options: &EntryOptions) -> Result<()>
    where
        T: Serialize + Clone + Send + Sync + 'static,
    {
        let refs: Vec<(&str, &T)> = entries.iter().map(|(key, value)| (*key, value)).collect();
        self.engine.write(&refs, options).await
    }

    /// Deletes `key` everywhere; true when L2 had it.
    pub async fn delete(&self, key: &str) -> Result<bool> {
        Ok(self.delete_many(&[key]).await? > 0)
    }

    /// Deletes `keys` everywhere (one `UNLINK`); returns how many L2 had.
    pub async fn delete_many(&self, keys: &[&str]) -> Result<u64> {
        let engine = &self.engine;
        for key in keys {
            engine.check_key(key)?;
        }
        engine.evict_locally(keys.iter().copied());
        let entry_keys: Vec<String> = keys.iter().map(|key| engine.layout.entry(key)).collect();
        let entry_refs: Vec<&str> = entry_keys.iter().map(String::as_str).collect();
        let deleted = engine.store.delete(&entry_refs).await?;
        engine.journal(
            format!("del:{}", keys.join("\u{0}")),
            CacheChange::Delete {
                k: keys.iter().map(|key| (*key).to_owned()).collect(),
            },
            Apply::Delete(entry_keys.clone()),
        );
        engine.counters.invalidations(keys.len() as u64);
        engine
            .publish(CacheChange::Delete {
                k: keys.iter().map(|key| (*key).to_owned()).collect(),
            })
            .await;
        Ok(deleted)
    }
}
