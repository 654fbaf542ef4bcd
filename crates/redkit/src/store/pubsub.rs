//! Subscriptions shared by both stores, and the embedded store's hub.
//!
//! A [`Subscription`] is a bounded queue of [`PubSubEvent`]s fed by one or
//! more background pumps (Redis' dedicated connection, the embedded hub).
//! Dropping it stops the pumps. Like Redis' client output buffer limit, a
//! subscriber that does not keep up loses messages rather than stalling
//! publishers.

use std::collections::HashMap;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

/// Events a subscription can queue before new ones are dropped.
pub(crate) const SUBSCRIPTION_BUFFER: usize = 4096;

/// A message received on a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The channel, without the key prefix.
    pub channel: String,
    /// The payload.
    pub payload: Bytes,
}

/// What a subscription yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PubSubEvent {
    /// A published message.
    Message(Message),
    /// The Redis connection was lost and the subscription is active again:
    /// messages published in between were missed.
    Resubscribed,
}

/// Receives the events of one `subscribe` call; dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    receiver: mpsc::Receiver<PubSubEvent>,
    pumps: Vec<AbortHandle>,
}

impl Subscription {
    pub(crate) fn channel() -> (mpsc::Sender<PubSubEvent>, mpsc::Receiver<PubSubEvent>) {
        mpsc::channel(SUBSCRIPTION_BUFFER)
    }

    pub(crate) fn new(receiver: mpsc::Receiver<PubSubEvent>, pumps: Vec<AbortHandle>) -> Self {
        Subscription { receiver, pumps }
    }

    /// The next event; `None` when the subscription has ended.
    pub async fn next(&mut self) -> Option<PubSubEvent> {
        self.receiver.recv().await
    }

    /// The next published message, skipping other events.
    pub async fn next_message(&mut self) -> Option<Message> {
        loop {
            if let PubSubEvent::Message(message) = self.next().await? {
                return Some(message);
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        for pump in &self.pumps {
            pump.abort();
        }
    }
}

/// The embedded store's channel registry.
#[derive(Debug, Default)]
pub(crate) struct Hub {
    subscribers: Mutex<HashMap<String, Vec<mpsc::Sender<PubSubEvent>>>>,
}

impl Hub {
    pub(crate) fn subscribe(&self, channels: &[&str], sender: &mpsc::Sender<PubSubEvent>) {
        let mut subscribers = self.subscribers.lock();
        for channel in channels {
            subscribers
                .entry((*channel).to_owned())
                .or_default()
                .push(sender.clone());
        }
    }

    /// Delivers to every live subscriber of `channel`; returns how many got it.
    pub(crate) fn publish(&self, channel: &str, payload: &[u8]) -> u64 {
        let mut subscribers = self.subscribers.lock();
        let Some(senders) = subscribers.get_mut(channel) else {
            return 0;
        };
        senders.retain(|sender| !sender.is_closed());
        let event = PubSubEvent::Message(Message {
            channel: channel.to_owned(),
            payload: Bytes::copy_from_slice(payload),
        });
        let delivered = senders
            .iter()
            .filter(|sender| sender.try_send(event.clone()).is_ok())
            .count();
        if senders.is_empty() {
            subscribers.remove(channel);
        }
        delivered as u64
    }
}
