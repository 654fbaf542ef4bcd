//! Password hashing with argon2id (the `argon2` crate's defaults, OWASP's
//! recommended parameters), run on the blocking pool: a hash takes tens of
//! milliseconds of CPU and must not stall the async workers.

use std::sync::LazyLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use crate::api_error::ApiError;

/// A hash verified when the username does not exist, so that a wrong
/// username takes as long as a wrong password (no user enumeration by timing).
static DUMMY_HASH: LazyLock<Option<String>> = LazyLock::new(|| {
    hash_now("not a real password")
        .inspect_err(|error| tracing::error!(%error, "cannot compute the dummy password hash"))
        .ok()
});

fn hash_now(password: &str) -> Result<String, HashError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|error| HashError::Random(error.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(HashError::Hash)?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(HashError::Hash)?
        .to_string())
}

fn verify_now(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// The PHC string of `password`.
pub(crate) async fn hash(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || hash_now(&password))
        .await
        .map_err(|join| ApiError::internal("password hashing task failed", &join))?
        .map_err(|error| ApiError::internal("password hashing failed", &error))
}

/// Whether `password` matches `hash`; with no hash (unknown user) a dummy
/// one is checked and the answer is false.
pub(crate) async fn verify(password: String, hash: Option<String>) -> Result<bool, ApiError> {
    tokio::task::spawn_blocking(move || match hash {
        Some(hash) => verify_now(&password, &hash),
        None => {
            if let Some(dummy) = DUMMY_HASH.as_deref() {
                verify_now(&password, dummy);
            }
            false
        }
    })
    .await
    .map_err(|join| ApiError::internal("password verification task failed", &join))
}

/// Why a hash could not be computed.
#[derive(Debug, thiserror::Error)]
enum HashError {
    #[error("the system's random source failed: {0}")]
    Random(String),
    #[error("argon2 failed")]
    Hash(#[source] argon2::password_hash::Error),
}
