//! Password hashing with argon2id (the `argon2` crate's defaults, OWASP's
//! recommended parameters) on a small pool of dedicated threads.
//!
//! A hash takes tens of milliseconds of CPU and about 19 MiB of memory. On
//! tokio's blocking pool (up to 512 threads) a burst of registrations from
//! many addresses — which per-IP rate limits do not stop — would take
//! gigabytes and keep them in the allocator's per-thread arenas. Here a
//! fixed number of threads hash one password at a time each, on memory each
//! thread allocates once, behind a bounded queue: memory stays under
//! `threads × 19 MiB`, waiting stays short, and a full queue answers 503
//! with `Retry-After` at once.

use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, LazyLock};

use std::cell::RefCell;

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use parking_lot::Mutex;

use crate::api_error::ApiError;

/// Bounds of password hashing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashingLimits {
    /// Hashes computed at once (one thread each). Default: the number of
    /// CPUs, at most 4.
    pub threads: usize,
    /// Hashes waiting for a thread; more get 503 at once. Default: 32.
    pub queue: usize,
}

impl Default for HashingLimits {
    fn default() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        HashingLimits {
            threads: cpus.clamp(1, 4),
            queue: 32,
        }
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// Passwords handed to the pool to be hashed (registrations), counted when
/// asked for: what hashing a client made the service spend.
const HASHES: &str = "redkit_password_hashes_total";

/// The hashing pool; cheap to clone. Its threads end when the last clone
/// is dropped.
#[derive(Debug, Clone)]
pub struct Passwords {
    jobs: SyncSender<Job>,
}

impl Passwords {
    /// Starts `limits.threads` hashing threads behind a queue of `limits.queue`.
    pub fn start(limits: HashingLimits) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::sync_channel::<Job>(limits.queue);
        let queue = Arc::new(Mutex::new(queue));
        for index in 0..limits.threads.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("redkit-argon2-{index}"))
                .spawn(move || {
                    if index == 0 {
                        // Computed once at start, off the request path.
                        LazyLock::force(&DUMMY_HASH);
                    }
                    work(&queue);
                })?;
        }
        Ok(Passwords { jobs })
    }

    /// The PHC string of `password`.
    pub(crate) async fn hash(&self, password: String) -> Result<String, ApiError> {
        metrics::counter!(HASHES).increment(1);
        self.run(move || hash_now(&password))
            .await?
            .map_err(|error| ApiError::internal("password hashing failed", &error))
    }

    /// Whether `password` matches `hash`; with no hash (unknown user) a dummy
    /// one is checked and the answer is false, so both failures take as long.
    pub(crate) async fn verify(
        &self,
        password: String,
        hash: Option<String>,
    ) -> Result<bool, ApiError> {
        self.run(move || match hash {
            Some(hash) => verify_now(&password, &hash),
            None => {
                if let Some(dummy) = DUMMY_HASH.as_deref() {
                    verify_now(&password, dummy);
                }
                false
            }
        })
        .await
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            // The caller may have gone (deadline, disconnect): nothing to do.
            let _ = reply.send(work());
        });
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                metrics::counter!("redkit_password_hashing_rejected_total").increment(1);
                return Err(ApiError::busy("password hashing"));
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(ApiError::unavailable("password hashing"));
            }
        }
        answer
            .await
            .map_err(|_| ApiError::unavailable("password hashing"))
    }
}

fn work(queue: &Mutex<Receiver<Job>>) {
    loop {
        // One thread waits on the queue at a time; the others wait for the lock.
        let job = queue.lock().recv();
        match job {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

/// A hash verified when the username does not exist, so that a wrong
/// username takes as long as a wrong password (no user enumeration by timing).
static DUMMY_HASH: LazyLock<Option<String>> = LazyLock::new(|| {
    hash_now("not a real password")
        .inspect_err(|error| tracing::error!(%error, "cannot compute the dummy password hash"))
        .ok()
});

/// Largest argon2 memory a stored hash may ask for (64 MiB); a larger one
/// is refused rather than allocated.
const MAX_MEMORY_BLOCKS: usize = 64 * 1024;

thread_local! {
    /// Each hashing thread's argon2 memory, allocated once and reused.
    /// Allocating it per hash (as `PasswordHasher::hash_password` does) is
    /// not returned to the system by glibc's aligned allocations: resident
    /// memory grew by the whole 19 MiB with every hash, on one thread.
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Runs `argon2` into `out` on this thread's reused memory.
fn hash_into(argon2: &Argon2<'_>, password: &[u8], salt: &[u8], out: &mut [u8]) -> bool {
    let blocks = argon2.params().block_count();
    if blocks > MAX_MEMORY_BLOCKS {
        return false;
    }
    MEMORY.with(|memory| {
        let mut memory = memory.borrow_mut();
        if memory.len() < blocks {
            memory.resize(blocks, Block::default());
        }
        argon2
            .hash_password_into_with_memory(password, salt, out, &mut memory[..blocks])
            .is_ok()
    })
}

fn hash_now(password: &str) -> Result<String, HashError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|error| HashError::Random(error.to_string()))?;
    let argon2 = Argon2::default();
    let mut output = [0u8; Params::DEFAULT_OUTPUT_LEN];
    if !hash_into(&argon2, password.as_bytes(), &salt, &mut output) {
        return Err(HashError::Argon2);
    }
    let salt = SaltString::encode_b64(&salt).map_err(HashError::Encode)?;
    let hash = PasswordHash {
        algorithm: Algorithm::default().ident(),
        version: Some(Version::default().into()),
        params: ParamsString::try_from(argon2.params()).map_err(HashError::Encode)?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&output).map_err(HashError::Encode)?),
    };
    Ok(hash.to_string())
}

fn verify_now(password: &str, stored: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let algorithm = Algorithm::try_from(parsed.algorithm);
    let version = parsed.version.map(Version::try_from).transpose();
    let params = Params::try_from(&parsed);
    let (Ok(algorithm), Ok(version), Ok(params)) = (algorithm, version, params) else {
        return false;
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let argon2 = Argon2::new(algorithm, version.unwrap_or_default(), params);
    let mut computed = vec![0u8; expected.len()];
    // `Output`'s equality is constant-time.
    hash_into(&argon2, password.as_bytes(), salt, &mut computed)
        && Output::new(&computed).is_ok_and(|computed| computed == expected)
}

/// Why a hash could not be computed.
#[derive(Debug, thiserror::Error)]
enum HashError {
    #[error("the system's random source failed: {0}")]
    Random(String),
    #[error("argon2 failed")]
    Argon2,
    #[error("cannot encode the password hash")]
    Encode(#[source] argon2::password_hash::Error),
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use argon2::PasswordVerifier;

    use super::*;

    #[test]
    fn hashes_are_standard_phc_strings_that_verify_both_ways() {
        let ours = hash_now("correct horse").unwrap();
        assert!(
            ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{ours}"
        );
        assert!(verify_now("correct horse", &ours));
        assert!(!verify_now("wrong horse", &ours));
        // The argon2 crate's own verifier accepts ours, and ours accepts its.
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"correct horse", &parsed)
                .is_ok()
        );
        let theirs = argon2::PasswordHasher::hash_password(
            &Argon2::default(),
            b"battery staple",
            &SaltString::encode_b64(&[7u8; 16]).unwrap(),
        )
        .unwrap()
        .to_string();
        assert!(verify_now("battery staple", &theirs));
        for garbage in [
            "",
            "$argon2id$",
            "plain text",
            "$argon2id$v=19$m=999999999,t=1,p=1$c2FsdHNhbHQ$aGFzaA",
        ] {
            assert!(!verify_now("x", garbage), "{garbage}");
        }
    }
}
