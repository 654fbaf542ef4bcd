//! GET /events: the user's task changes as Server-Sent Events.
//!
//! The stream starts with a `ready` event (the subscription is live from
//! then on), then sends one `task` event per change as JSON
//! (`{"type": "created", "task": {...}}`, `updated`, `deleted` with `id`, or
//! `resync`). It ends cleanly when the service shuts down.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use tokio::sync::broadcast;

use super::{Delivery, TaskEvent};
use crate::auth::CurrentUser;
use crate::server::AppState;
use crate::shutdown::Shutdown;

/// GET /events.
pub(crate) async fn events(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let receiver = state.events.receiver();
    let ready =
        futures_util::stream::once(async { Ok(Event::default().event("ready").data("{}")) });
    let changes = futures_util::stream::unfold(
        (receiver, state.shutdown.clone(), user.id),
        |(mut receiver, shutdown, user_id)| async move {
            let event = next_for(&mut receiver, &shutdown, user_id).await?;
            Some((Ok(task_event(&event)), (receiver, shutdown, user_id)))
        },
    );
    Sse::new(futures_util::StreamExt::chain(ready, changes)).keep_alive(KeepAlive::default())
}

/// The next event for `user_id`; `None` at shutdown.
async fn next_for(
    receiver: &mut broadcast::Receiver<Arc<Delivery>>,
    shutdown: &Shutdown,
    user_id: i64,
) -> Option<TaskEvent> {
    loop {
        let received = tokio::select! {
            () = shutdown.wait() => return None,
            received = receiver.recv() => received,
        };
        match received {
            Ok(delivery) if delivery.user_id.is_none_or(|id| id == user_id) => {
                return Some(delivery.event.clone());
            }
            Ok(_) => {}
            // This client fell behind and missed events.
            Err(broadcast::error::RecvError::Lagged(_)) => return Some(TaskEvent::Resync),
            Err(broadcast::error::RecvError::Closed) => return None,
        }
    }
}

fn task_event(event: &TaskEvent) -> Event {
    Event::default()
        .event("task")
        .json_data(event)
        .unwrap_or_else(|_| Event::default().event("task").data(r#"{"type":"resync"}"#))
}
