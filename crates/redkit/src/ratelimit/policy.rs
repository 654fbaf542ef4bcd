//! Rate-limit policies as data.

use std::time::Duration;

use crate::error::{Error, Result};

/// How requests are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// Generic cell rate algorithm (redis_rate's): `limit` requests per
    /// `window` at a steady rate, with bursts of up to `burst` requests.
    /// Smooth; stores one timestamp per key.
    Gcra {
        /// Requests that may arrive at once. Usually equal to the limit.
        burst: u64,
    },
    /// Sliding-window counter (Cloudflare's): the current fixed window's
    /// count plus the previous window's weighted by how much of it still
    /// overlaps the sliding window. Close to exact; stores one small string
    /// per key.
    SlidingWindow,
}

/// A named limit: `limit` requests per `window`, counted by `algorithm`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    name: String,
    limit: u64,
    window: Duration,
    algorithm: Algorithm,
}

impl Policy {
    /// A sliding-window policy; see [`Policy::gcra`] for the other algorithm.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use redkit::ratelimit::Policy;
    ///
    /// let api = Policy::new("api", 1000, Duration::from_secs(3600))?;
    /// let smooth = Policy::gcra("search", 10, Duration::from_secs(1), 5)?;
    /// # let _ = (api, smooth);
    /// # Ok::<(), redkit::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the problem: a name that is not 1 to
    /// 64 letters, digits, `_` or `-`; a limit outside 1 … 10⁹; a window
    /// outside 1 ms … 31 days; a limit × window too large to count exactly;
    /// a GCRA burst of zero.
    pub fn new(name: impl Into<String>, limit: u64, window: Duration) -> Result<Self> {
        Self::with_algorithm(name, limit, window, Algorithm::SlidingWindow)
    }

    /// A GCRA policy with bursts of up to `burst` requests.
    pub fn gcra(name: impl Into<String>, limit: u64, window: Duration, burst: u64) -> Result<Self> {
        Self::with_algorithm(name, limit, window, Algorithm::Gcra { burst })
    }

    fn with_algorithm(
        name: impl Into<String>,
        limit: u64,
        window: Duration,
        algorithm: Algorithm,
    ) -> Result<Self> {
        let name = name.into();
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(Error::invalid_config(
                "rate-limit policy name",
                format!("{name:?} is not a plain name"),
                "1 to 64 letters, digits, `_` or `-`",
            ));
        }
        if limit == 0 || limit > 1_000_000_000 {
            return Err(Error::invalid_config(
                format!("rate-limit policy {name} limit"),
                format!("{limit} is out of range"),
                "a number of requests from 1 to 1000000000",
            ));
        }
        if window < Duration::from_millis(1) || window > Duration::from_secs(31 * 24 * 3600) {
            return Err(Error::invalid_config(
                format!("rate-limit policy {name} window"),
                format!("{window:?} is out of range"),
                "a window from 1 ms to 31 days",
            ));
        }
        // The scripts compute in microseconds with Lua's doubles, exact below 2^53.
        if u128::from(limit) * window.as_micros() > (1u128 << 53) {
            return Err(Error::invalid_config(
                format!("rate-limit policy {name}"),
                format!("{limit} requests per {window:?} is too large to count exactly"),
                "limit × window (in µs) below 2^53, such as 1000000 per day",
            ));
        }
        if let Algorithm::Gcra { burst } = algorithm
            && (burst == 0 || burst > limit.saturating_mul(1000))
        {
            return Err(Error::invalid_config(
                format!("rate-limit policy {name} burst"),
                format!("{burst} is out of range"),
                "a burst of at least 1",
            ));
        }
        Ok(Policy {
            name,
            limit,
            window,
            algorithm,
        })
    }

    /// DEFAULT: 100 requests per minute, a general per-client limit.
    pub fn default_preset() -> Self {
        Self::preset("default", 100, 60)
    }

    /// API: 1000 requests per hour.
    pub fn api() -> Self {
        Self::preset("api", 1000, 3600)
    }

    /// AUTH: 5 attempts per 5 minutes (login, register).
    pub fn auth() -> Self {
        Self::preset("auth", 5, 300)
    }

    /// STATIC: 1000 requests per minute.
    pub fn static_files() -> Self {
        Self::preset("static", 1000, 60)
    }

    fn preset(name: &str, limit: u64, seconds: u64) -> Self {
        Policy {
            name: name.to_owned(),
            limit,
            window: Duration::from_secs(seconds),
            algorithm: Algorithm::SlidingWindow,
        }
    }

    /// The policy's name (in keys and headers).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Requests per window.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The window.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The most requests admitted at once: the burst for GCRA, the limit for
    /// the sliding window.
    pub fn capacity(&self) -> u64 {
        match self.algorithm {
            Algorithm::Gcra { burst } => burst,
            Algorithm::SlidingWindow => self.limit,
        }
    }
}
