//! Following channels for as long as a component lives: one
//! subscribe-and-resubscribe loop for every listener (the cache backplane,
//! the session-cache announcements, an application's event fan-out).
//!
//! A [`Subscription`](super::Subscription) already survives a dropped
//! Redis connection (it resubscribes and says
//! [`PubSubEvent::Resubscribed`]); what each listener used to write by hand
//! around it — retrying a failed first subscribe, starting over when a
//! subscription ends (the fallback store switched, a failover), telling
//! the listener that messages may have been missed — is [`follow`], with
//! one retry rule: capped exponential backoff with jitter from 100 ms to
//! 1 s, for as long as the listener wants messages.
//!
//! On every topology the guarantee is the same: after
//! [`FollowEvent::Missed`] or [`FollowEvent::Lost`] the listener must
//! assume it missed messages (drop what it caches, tell its clients to
//! resync); between two such events, it missed none that Redis delivered.

use std::ops::ControlFlow;
use std::time::Duration;

use tokio::task::AbortHandle;

use super::{Message, PubSubEvent, Store};
use crate::config::RetryConfig;
use crate::connection::Backoff;

/// What a listener is told by [`follow`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FollowEvent {
    /// The first subscription is active: no message published from now on
    /// is missed.
    Subscribed,
    /// A message on one of the channels.
    Message(Message),
    /// The subscription is active again after an interruption: messages
    /// published meanwhile were missed.
    Missed,
    /// The subscription is gone (or the first one could not be made);
    /// retrying in the background. Messages are being missed.
    Lost,
}

/// The background task of a [`follow`] call; dropping it stops following.
#[derive(Debug)]
#[must_use = "dropping Following stops following the channels"]
pub struct Following {
    task: AbortHandle,
}

impl Drop for Following {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Subscribes `store` to `channels` and calls `listener` with every
/// [`FollowEvent`] until it returns [`ControlFlow::Break`] or the returned
/// [`Following`] is dropped.
///
/// The first subscribe is attempted before this returns: when it worked,
/// no message published after this returns is missed (the listener gets
/// [`FollowEvent::Subscribed`] first); when it did not, the listener gets
/// [`FollowEvent::Lost`], the subscription is retried in the background
/// and a success is reported as [`FollowEvent::Missed`].
pub async fn follow<S, L>(store: S, channels: &[&str], listener: L) -> Following
where
    S: Store,
    L: FnMut(FollowEvent) -> ControlFlow<()> + Send + 'static,
{
    let channels = owned(channels);
    let first = subscribe(&store, &channels).await;
    spawn(store, channels, Some(first), listener)
}

/// [`follow`] without waiting: the first subscribe happens in the
/// background too (for constructors that are not `async`); the listener
/// hears [`FollowEvent::Subscribed`] or [`FollowEvent::Lost`] first.
pub fn follow_in_background<S, L>(store: S, channels: &[&str], listener: L) -> Following
where
    S: Store,
    L: FnMut(FollowEvent) -> ControlFlow<()> + Send + 'static,
{
    spawn(store, owned(channels), None, listener)
}

fn owned(channels: &[&str]) -> Vec<String> {
    channels.iter().map(|&channel| channel.to_owned()).collect()
}

fn spawn<S, L>(
    store: S,
    channels: Vec<String>,
    first: Option<Option<super::Subscription>>,
    listener: L,
) -> Following
where
    S: Store,
    L: FnMut(FollowEvent) -> ControlFlow<()> + Send + 'static,
{
    let task = tokio::spawn(run(store, channels, first, listener));
    Following {
        task: task.abort_handle(),
    }
}

/// `first`: the outcome of a first subscribe made before the task started,
/// or `None` to make it here.
async fn run<S, L>(
    store: S,
    channels: Vec<String>,
    first: Option<Option<super::Subscription>>,
    mut listener: L,
) where
    S: Store,
    L: FnMut(FollowEvent) -> ControlFlow<()>,
{
    let backoff = Backoff::new(
        RetryConfig::default()
            .initial_delay(Duration::from_millis(100))
            .max_delay(Duration::from_secs(1))
            .max_attempts(u32::MAX)
            .degraded_probe_interval(Duration::from_secs(1)),
    );
    let mut current = match first {
        Some(first) => first,
        None => subscribe(&store, &channels).await,
    };
    let announced = match current {
        Some(_) => listener(FollowEvent::Subscribed),
        None => listener(FollowEvent::Lost),
    };
    if announced.is_break() {
        return;
    }
    let mut failures = 0u32;
    loop {
        if let Some(mut subscription) = current.take() {
            failures = 0;
            while let Some(event) = subscription.next().await {
                let event = match event {
                    PubSubEvent::Message(message) => FollowEvent::Message(message),
                    PubSubEvent::Resubscribed => FollowEvent::Missed,
                };
                if listener(event).is_break() {
                    return;
                }
            }
            tracing::debug!(channels = ?channels, "subscription ended; subscribing again");
            if listener(FollowEvent::Lost).is_break() {
                return;
            }
        }
        failures = failures.saturating_add(1);
        tokio::time::sleep(backoff.delay(failures)).await;
        current = subscribe(&store, &channels).await;
        if current.is_some() && listener(FollowEvent::Missed).is_break() {
            return;
        }
    }
}

async fn subscribe<S: Store>(store: &S, channels: &[String]) -> Option<super::Subscription> {
    let names: Vec<&str> = channels.iter().map(String::as_str).collect();
    match store.subscribe(&names).await {
        Ok(subscription) => Some(subscription),
        Err(error) => {
            tracing::warn!(channels = ?channels, %error, "cannot subscribe; retrying");
            None
        }
    }
}
