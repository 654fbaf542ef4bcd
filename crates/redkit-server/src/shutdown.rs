//! [`Shutdown`]: tells long-lived responses (SSE streams) and background
//! tasks that the service is stopping, so graceful shutdown is not held up
//! by streams that would otherwise never end.

use tokio::sync::watch;

/// A shutdown flag: set once, awaited by many.
#[derive(Debug, Clone)]
pub struct Shutdown {
    sender: std::sync::Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown {
            sender: std::sync::Arc::new(watch::channel(false).0),
        }
    }
}

impl Shutdown {
    /// Starts the shutdown: every [`Shutdown::wait`] resolves.
    pub fn trigger(&self) {
        self.sender.send_replace(true);
    }

    /// Whether the shutdown has started.
    pub fn is_triggered(&self) -> bool {
        *self.sender.borrow()
    }

    /// Resolves once the shutdown has started.
    pub async fn wait(&self) {
        let mut receiver = self.sender.subscribe();
        // Only fails if the sender is gone, which `self` prevents.
        let _ = receiver.wait_for(|stopping| *stopping).await;
    }
}
