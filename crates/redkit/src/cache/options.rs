//! Per-cache defaults and per-call overrides.

use std::time::Duration;

/// How an entry is cached. A cache has defaults ([`CacheBuilder::default_options`](super::CacheBuilder::default_options));
/// each call can start from them with [`Cache::options`](super::Cache::options) and change
/// what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EntryOptions {
    /// How long the entry is fresh. Default: 5 minutes.
    pub ttl: Duration,
    /// A random extra of up to this much is added to `ttl`, so that entries
    /// written together do not all expire together. Default: zero.
    pub ttl_jitter: Duration,
    /// Tags the entry can be invalidated by. Default: none.
    pub tags: Vec<String>,
    /// After `ttl`, `get_or_set` still serves the stale value for this long
    /// while it refreshes in the background (stale-while-revalidate).
    /// Default: zero (off).
    pub stale_window: Duration,
    /// After `ttl`, a stale value may be served for this long when the loader
    /// or Redis fails (fail-safe). Default: zero (off).
    pub fail_safe_max: Duration,
    /// After a loader failure answered with a stale value (fail-safe), the
    /// stale value is served for this long without calling the loader again,
    /// so a failing database is not hit by every read (FusionCache's
    /// `FailSafeThrottleDuration`). Per key and per instance. Default: 5 s.
    pub fail_safe_throttle: Duration,
    /// When a stale value exists and the loader takes longer than this, the
    /// stale value is returned and the loader finishes in the background.
    /// Default: none.
    pub soft_timeout: Option<Duration>,
    /// The loader is abandoned after this long. Default: none.
    pub hard_timeout: Option<Duration>,
    /// Keep the decoded value in the in-process L1 tier. Default: true.
    pub l1: bool,
    /// Lock the key across instances while loading (SET NX PX), so that one
    /// instance loads and the others wait for its value. Default: false.
    pub distributed_lock: bool,
}

impl Default for EntryOptions {
    fn default() -> Self {
        EntryOptions {
            ttl: Duration::from_secs(300),
            ttl_jitter: Duration::ZERO,
            tags: Vec::new(),
            stale_window: Duration::ZERO,
            fail_safe_max: Duration::ZERO,
            fail_safe_throttle: Duration::from_secs(5),
            soft_timeout: None,
            hard_timeout: None,
            l1: true,
            distributed_lock: false,
        }
    }
}

impl EntryOptions {
    /// Sets the fresh duration.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets the jitter bound.
    #[must_use]
    pub fn ttl_jitter(mut self, jitter: Duration) -> Self {
        self.ttl_jitter = jitter;
        self
    }

    /// Adds a tag.
    #[must_use]
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Replaces the tags.
    #[must_use]
    pub fn tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the stale-while-revalidate window.
    #[must_use]
    pub fn stale_window(mut self, window: Duration) -> Self {
        self.stale_window = window;
        self
    }

    /// Sets the fail-safe limit.
    #[must_use]
    pub fn fail_safe_max(mut self, max: Duration) -> Self {
        self.fail_safe_max = max;
        self
    }

    /// Sets how long a failed loader is not called again while its stale
    /// value is served.
    #[must_use]
    pub fn fail_safe_throttle(mut self, throttle: Duration) -> Self {
        self.fail_safe_throttle = throttle;
        self
    }

    /// Sets the loader's soft timeout.
    #[must_use]
    pub fn soft_timeout(mut self, timeout: Duration) -> Self {
        self.soft_timeout = Some(timeout);
        self
    }

    /// Sets the loader's hard timeout.
    #[must_use]
    pub fn hard_timeout(mut self, timeout: Duration) -> Self {
        self.hard_timeout = Some(timeout);
        self
    }

    /// Turns the L1 tier on or off for this entry.
    #[must_use]
    pub fn l1(mut self, enabled: bool) -> Self {
        self.l1 = enabled;
        self
    }

    /// Turns the cross-instance loading lock on or off.
    #[must_use]
    pub fn distributed_lock(mut self, enabled: bool) -> Self {
        self.distributed_lock = enabled;
        self
    }

    /// How long the entry is kept at all: `ttl` plus the longer of the stale
    /// window and the fail-safe limit.
    pub(crate) fn retention(&self) -> Duration {
        self.stale_window.max(self.fail_safe_max)
    }
}

/// What a loader returns with [`Cache::get_or_set_with`](super::Cache::get_or_set_with):
/// the value, and how (or whether) to cache it.
#[derive(Debug, Clone)]
pub struct Loaded<T> {
    pub(crate) value: T,
    pub(crate) cache: bool,
    pub(crate) ttl: Option<Duration>,
    pub(crate) tags: Option<Vec<String>>,
}

impl<T> Loaded<T> {
    /// The value, cached with the call's options.
    pub fn new(value: T) -> Self {
        Loaded {
            value,
            cache: true,
            ttl: None,
            tags: None,
        }
    }

    /// Return the value but do not cache it (for example a "not found").
    #[must_use]
    pub fn do_not_cache(mut self) -> Self {
        self.cache = false;
        self
    }

    /// Cache with this TTL instead of the call's.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Cache with these tags instead of the call's.
    #[must_use]
    pub fn tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags = Some(tags.into_iter().map(Into::into).collect());
        self
    }
}

impl<T> From<T> for Loaded<T> {
    fn from(value: T) -> Self {
        Loaded::new(value)
    }
}
