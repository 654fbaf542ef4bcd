//! Checks that reach Redis together go in one script call.
//!
//! A check alone is one call of the check script, as always. Under load, the
//! checks that arrive while a call is in flight gather, and the next call
//! carries all of them (up to `MAX_CHECKS`): Redis then pays the script's
//! fixed price — the call's machinery and `TIME` — once for many checks,
//! which is where most of a check's time on Redis' one thread went. Each
//! check is still atomic on its own; the checks of one call share one clock
//! reading.
//!
//! Background tasks send the calls (a few at a time per limiter), so a
//! caller that gives up (a dropped request) never strands the checks of
//! others. On Cluster the keys of one call must share a slot, so each check
//! goes alone there; the embedded store has no round trip to save and runs
//! each check directly.

use tokio::sync::oneshot;

use super::algorithm::{CHECKS, CheckArgs, WIDTH, call_args};
use crate::coalesce::Lanes;
use crate::error::{Error, Result};
use crate::store::{Backend, ScriptValue, Store};

/// The most checks in one call: bounds the time one call holds Redis.
pub(super) const MAX_CHECKS: usize = 128;

/// One check's reply: `allowed, remaining, retry_after_us, reset_after_us`.
pub(super) type Reply = [i64; WIDTH];

/// The checks waiting for the next calls of one limiter.
#[derive(Debug, Default)]
pub(super) struct Batches {
    lanes: Lanes<Waiting>,
}

#[derive(Debug)]
struct Waiting {
    key: String,
    args: CheckArgs,
    reply: oneshot::Sender<Result<Reply>>,
}

impl Batches {
    /// Runs one check of `key` (the store key) in the next call to the
    /// store.
    pub(super) async fn check<S: Store>(
        &self,
        store: &S,
        key: String,
        args: CheckArgs,
    ) -> Result<Reply> {
        if store.backend() == Backend::Embedded || store.is_cluster() {
            return run_one(store, &key, &args).await;
        }
        let (reply, answer) = oneshot::channel();
        self.lanes
            .push(Waiting { key, args, reply }, MAX_CHECKS, store, send);
        answer.await.unwrap_or_else(|_| {
            Err(Error::Script {
                script: CHECKS.name(),
                message: "the call carrying this check was abandoned".to_owned(),
            })
        })
    }
}

/// One check on its own.
pub(super) async fn run_one<S: Store>(store: &S, key: &str, args: &CheckArgs) -> Result<Reply> {
    let reply = store
        .run_script(&CHECKS, &[key], &call_args([args]))
        .await?;
    // `split` checked the length: one reply for the one check.
    split(&reply, 1).map(|replies| replies[0])
}

/// One call for `batch`; every waiting check gets its reply or the call's
/// error.
async fn send<S: Store>(store: S, batch: Vec<Waiting>) {
    let keys: Vec<&str> = batch.iter().map(|waiting| waiting.key.as_str()).collect();
    let args = call_args(batch.iter().map(|waiting| &waiting.args));
    let replies = store
        .run_script(&CHECKS, &keys, &args)
        .await
        .and_then(|reply| split(&reply, batch.len()));
    match replies {
        Ok(replies) => {
            for (waiting, reply) in batch.into_iter().zip(replies) {
                // A caller that gave up has dropped its receiver: nothing to do.
                let _ = waiting.reply.send(Ok(reply));
            }
        }
        Err(error) => {
            for waiting in batch {
                let _ = waiting.reply.send(Err(duplicate(&error)));
            }
        }
    }
}

/// The call's reply, four numbers per check.
fn split(reply: &ScriptValue, checks: usize) -> Result<Vec<Reply>> {
    let numbers: Option<Vec<i64>> = reply
        .as_array()
        .map(|items| items.iter().map(ScriptValue::as_i64).collect())
        .unwrap_or_default();
    match numbers {
        Some(numbers) if numbers.len() == checks * WIDTH => Ok(numbers
            .chunks_exact(WIDTH)
            .map(|chunk| [chunk[0], chunk[1], chunk[2], chunk[3]])
            .collect()),
        _ => Err(Error::Script {
            script: CHECKS.name(),
            message: format!("unexpected reply {reply:?} for {checks} checks"),
        }),
    }
}

/// The call's error again, for each check it carried (see
/// [`Error::duplicate`]).
fn duplicate(error: &Error) -> Error {
    error.duplicate().unwrap_or_else(|| Error::Script {
        script: CHECKS.name(),
        message: error.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_of_the_wrong_length_is_named() {
        let reply = ScriptValue::Array(vec![ScriptValue::Int(1); 5]);
        let error = split(&reply, 2).expect_err("five numbers for two checks");
        assert!(error.to_string().contains("redkit_ratelimit"), "{error}");
        let reply = ScriptValue::Array((0..8).map(ScriptValue::Int).collect());
        assert_eq!(
            split(&reply, 2).expect("eight numbers"),
            vec![[0, 1, 2, 3], [4, 5, 6, 7]]
        );
    }

    #[test]
    fn duplicated_errors_keep_their_kind() {
        let timeout = Error::Timeout {
            command: "EVALSHA".to_owned(),
            after: std::time::Duration::from_millis(5),
        };
        assert!(duplicate(&timeout).is_unavailable());
        let reset = Error::Command {
            command: "EVALSHA".to_owned(),
            source: Box::new(redis::RedisError::from(std::io::Error::from(
                std::io::ErrorKind::ConnectionReset,
            ))),
        };
        assert!(reset.is_unavailable(), "precondition: {reset:?}");
        assert!(duplicate(&reset).is_unavailable());
        assert_eq!(
            duplicate(&Error::Closed).to_string(),
            Error::Closed.to_string()
        );
    }
}
