//! Session settings.

use std::time::Duration;

/// How sessions live and what happens while Redis is down.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionConfig {
    /// Inactivity lifetime. Default: 24 hours.
    pub ttl: Duration,
    /// Each read and update extends the lifetime to `ttl` (rolling).
    /// Default: true.
    pub rolling: bool,
    /// Hard limit from creation, whatever the activity. Default: none.
    pub absolute_max: Option<Duration>,
    /// While the store serves from the embedded fallback (Redis down), keep
    /// working (sessions created meanwhile exist on this instance only) or
    /// fail with [`Error::Unavailable`](crate::Error::Unavailable) so the
    /// service answers 503. Default: false (keep serving).
    pub fail_closed: bool,
    /// The per-user index is kept alive at most this long after the last
    /// read of one of its sessions. Default: 60 s.
    pub index_refresh: Duration,
    /// With rolling expiry, a session read by this instance is extended at
    /// most once per this interval; reads in between are plain `GET`s (like
    /// connect-mongo's `touchAfter`). A session may then expire up to this
    /// much earlier than "`ttl` after the last read". Zero extends on every
    /// read. Default: 60 s.
    pub touch_interval: Duration,
    /// Keep sessions read from the store in process for up to this long, so
    /// most reads cost no round trip. Coherent across instances: every
    /// update, destroy, id cycle and destroy-all is announced on a pub/sub
    /// channel and evicts the entry everywhere within milliseconds; after a
    /// lost subscription everything local is dropped. What remains is the
    /// window of pub/sub delivery (a session ended on another instance may
    /// still be accepted here for that long) and, if a message is lost
    /// without the subscription noticing, this duration — keep it short.
    /// Zero turns the local cache off. Default: off.
    pub local_cache: Duration,
    /// With a local cache, while the store is unavailable (down, hung,
    /// timing out, cut off), a session this instance read from the store
    /// within this duration is still accepted — fail-safe, as FusionCache
    /// does for cached values — so logged-in users keep reading through a
    /// short outage. Zero: fail with the store's error. Needs
    /// `local_cache`. Default: zero (off).
    ///
    /// **Security trade-off.** An instance cut off from the store cannot
    /// hear that a session was ended elsewhere (logout, destroy-all on
    /// another instance): it keeps accepting that session for at most this
    /// duration, counted from its last *successful* read of it from the
    /// store (reads served by the fail-safe never extend the window). Keep
    /// it short — seconds, enough to ride out a restart or a blip. Sessions
    /// served by the fail-safe are read-only: updating, extending, moving
    /// (`cycle_id`, i.e. logging in again) or destroying them needs the
    /// store and fails with its error, so a partitioned instance cannot
    /// give an ended session a new life. Entries are dropped once the store
    /// is back (changes may have been missed).
    pub local_fail_safe: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            ttl: Duration::from_secs(24 * 3600),
            rolling: true,
            absolute_max: None,
            fail_closed: false,
            index_refresh: Duration::from_secs(60),
            touch_interval: Duration::from_secs(60),
            local_cache: Duration::ZERO,
            local_fail_safe: Duration::ZERO,
        }
    }
}

impl SessionConfig {
    /// Sets the inactivity lifetime.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Turns rolling expiry on or off.
    #[must_use]
    pub fn rolling(mut self, rolling: bool) -> Self {
        self.rolling = rolling;
        self
    }

    /// Sets the absolute maximum lifetime.
    #[must_use]
    pub fn absolute_max(mut self, max: Duration) -> Self {
        self.absolute_max = Some(max);
        self
    }

    /// Fail closed while Redis is down.
    #[must_use]
    pub fn fail_closed(mut self, fail_closed: bool) -> Self {
        self.fail_closed = fail_closed;
        self
    }

    /// Sets the touch interval.
    #[must_use]
    pub fn touch_interval(mut self, interval: Duration) -> Self {
        self.touch_interval = interval;
        self
    }

    /// Sets how long sessions stay in the in-process cache (zero: off).
    #[must_use]
    pub fn local_cache(mut self, duration: Duration) -> Self {
        self.local_cache = duration;
        self
    }

    /// Sets how long a locally cached session is still accepted while the
    /// store is unavailable (zero: off); see
    /// [`SessionConfig::local_fail_safe`] for the security trade-off.
    #[must_use]
    pub fn local_fail_safe(mut self, duration: Duration) -> Self {
        self.local_fail_safe = duration;
        self
    }

    /// Sets the index refresh interval.
    #[must_use]
    pub fn index_refresh(mut self, interval: Duration) -> Self {
        self.index_refresh = interval;
        self
    }
}
