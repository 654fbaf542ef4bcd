//! Single-flight: concurrent loads of one key share one loader call.
//!
//! Every caller that finds the key missing joins the key's flight; the first
//! one runs the load and the others await its result. If the runner is
//! cancelled, the next waiter takes over (tokio's `OnceCell`), so nobody
//! waits forever. The flight is removed when it lands; later callers find the
//! value in the cache.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::OnceCell;

use crate::error::Error;

/// A landed flight: the loaded value (type-erased) or the shared error.
pub(crate) type Landing = Result<Arc<dyn Any + Send + Sync>, Arc<Error>>;

#[derive(Default)]
pub(crate) struct Flights {
    inflight: Mutex<HashMap<String, Arc<OnceCell<Landing>>>>,
}

impl std::fmt::Debug for Flights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flights")
            .field("inflight", &self.inflight.lock().len())
            .finish()
    }
}

impl Flights {
    /// Joins (or starts) the flight of `key`; `load` runs only if this caller
    /// ends up flying.
    pub(crate) async fn join<F, Fut>(&self, key: &str, load: F) -> Landing
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Landing>,
    {
        let cell = self
            .inflight
            .lock()
            .entry(key.to_owned())
            .or_insert_with(|| Arc::new(OnceCell::new()))
            .clone();
        let landing = cell.get_or_init(load).await.clone();
        let mut inflight = self.inflight.lock();
        if inflight
            .get(key)
            .is_some_and(|current| Arc::ptr_eq(current, &cell))
        {
            inflight.remove(key);
        }
        landing
    }
}

/// An error shared by every caller of one flight.
#[derive(Debug)]
pub(crate) struct SharedError(pub(crate) Arc<Error>);

impl std::fmt::Display for SharedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SharedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&*self.0)
    }
}

/// Turns a flight's shared error into an owned one for one caller.
pub(crate) fn owned_error(key: &str, error: Arc<Error>) -> Error {
    match Arc::try_unwrap(error) {
        Ok(error) => error,
        Err(shared) => match &*shared {
            Error::LoaderTimeout { key, after } => Error::LoaderTimeout {
                key: key.clone(),
                after: *after,
            },
            _ => Error::Loader {
                key: key.to_owned(),
                source: Box::new(SharedError(shared)),
            },
        },
    }
}
