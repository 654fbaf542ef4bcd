//! Real-time task changes: published through redkit's store pub/sub (Redis
//! pub/sub, or the embedded store's in-process hub), fanned out in process
//! to the Server-Sent-Events clients of each instance.
//!
//! Each instance holds one subscription on [`CHANNEL`]; a change made on
//! any instance reaches every instance's clients of that user. Pub/sub is
//! at-most-once: when the subscription had to be re-established (Redis
//! restarted) or a slow client fell behind, clients get a `resync` event
//! and should refetch `GET /tasks`.

mod stream;

use std::sync::Arc;
use std::time::Duration;

use redkit::store::{AnyStore, PubSubEvent, Store};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

pub(crate) use stream::events;

use crate::db::Task;
use crate::shutdown::Shutdown;

/// The pub/sub channel of task changes.
pub const CHANNEL: &str = "events:tasks";

/// Events buffered per SSE client before it is told to resync.
const CLIENT_BUFFER: usize = 256;

/// A change to one of a user's tasks, as clients receive it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TaskEvent {
    /// A task was created.
    Created {
        /// The new task.
        task: Task,
    },
    /// A task was changed.
    Updated {
        /// The task after the change.
        task: Task,
    },
    /// A task was deleted.
    Deleted {
        /// Its id.
        id: i64,
    },
    /// Changes may have been missed: refetch the list.
    Resync,
}

/// What travels on the channel: the event and whose it is.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Envelope {
    user_id: i64,
    event: TaskEvent,
}

/// An event for the clients of this instance; `user_id: None` is for all.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    user_id: Option<i64>,
    event: TaskEvent,
}

/// Publishes task changes and delivers them to this instance's clients.
#[derive(Debug, Clone)]
pub struct TaskEvents {
    store: AnyStore,
    local: broadcast::Sender<Arc<Delivery>>,
}

impl TaskEvents {
    /// Subscribes to [`CHANNEL`] (active when this returns, if the store is
    /// reachable; otherwise retried in the background) and delivers until
    /// `shutdown`.
    pub async fn start(store: AnyStore, shutdown: Shutdown) -> Self {
        let (local, _) = broadcast::channel(CLIENT_BUFFER);
        let events = TaskEvents { store, local };
        let first = events.store.subscribe(&[CHANNEL]).await;
        tokio::spawn(events.clone().pump(first, shutdown));
        events
    }

    /// Tells every instance's clients of `user_id` about `event`. A failure
    /// is logged: the change itself is already committed.
    pub async fn publish(&self, user_id: i64, event: TaskEvent) {
        let envelope = Envelope { user_id, event };
        let payload = match serde_json::to_vec(&envelope) {
            Ok(payload) => payload,
            Err(error) => {
                tracing::error!(%error, "cannot encode a task event");
                return;
            }
        };
        if let Err(error) = self.store.publish(CHANNEL, &payload).await {
            tracing::warn!(%error, user_id, "cannot publish a task event");
        }
    }

    /// A receiver of this instance's deliveries.
    pub(crate) fn receiver(&self) -> broadcast::Receiver<Arc<Delivery>> {
        self.local.subscribe()
    }

    /// Live SSE clients on this instance.
    pub fn clients(&self) -> usize {
        self.local.receiver_count()
    }

    async fn pump(
        self,
        mut subscription: redkit::Result<redkit::store::Subscription>,
        shutdown: Shutdown,
    ) {
        loop {
            match subscription {
                Ok(mut active) => loop {
                    let event = tokio::select! {
                        () = shutdown.wait() => return,
                        event = active.next() => event,
                    };
                    match event {
                        Some(PubSubEvent::Message(message)) => self.deliver(&message.payload),
                        Some(PubSubEvent::Resubscribed) => self.broadcast(Delivery {
                            user_id: None,
                            event: TaskEvent::Resync,
                        }),
                        None => break,
                    }
                },
                Err(error) => {
                    tracing::warn!(%error, "cannot subscribe to task events; retrying");
                }
            }
            tokio::select! {
                () = shutdown.wait() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            subscription = self.store.subscribe(&[CHANNEL]).await;
            if subscription.is_ok() {
                self.broadcast(Delivery {
                    user_id: None,
                    event: TaskEvent::Resync,
                });
            }
        }
    }

    fn deliver(&self, payload: &[u8]) {
        match serde_json::from_slice::<Envelope>(payload) {
            Ok(envelope) => self.broadcast(Delivery {
                user_id: Some(envelope.user_id),
                event: envelope.event,
            }),
            Err(error) => tracing::warn!(%error, "ignoring a malformed task event"),
        }
    }

    fn broadcast(&self, delivery: Delivery) {
        // No receivers is fine: nobody is listening on this instance.
        let _ = self.local.send(Arc::new(delivery));
    }
}
