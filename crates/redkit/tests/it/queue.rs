//! The shared queue suite on each store, plus Redis-only behaviour: the
//! fallback buffer through an outage and persistence across a SIGKILL.

use std::time::Duration;

use redkit::Redkit;
use redkit::config::{EmbeddedConfig, RedisConfig};
use redkit_testkit::RedisServer;

use crate::support::fast_config;

mod embedded {
    use super::*;

    async fn make() -> (Redkit, ()) {
        let kit = Redkit::builder()
            .embedded(EmbeddedConfig::default())
            .build()
            .unwrap();
        (kit, ())
    }

    redkit::queue_conformance_tests!(make);
}

async fn on_redis(config: RedisConfig) -> Redkit {
    let kit = Redkit::builder().redis(config).build().unwrap();
    kit.connection()
        .unwrap()
        .wait_ready(Duration::from_secs(5))
        .await
        .unwrap();
    kit
}

mod redis {
    use super::*;

    async fn make() -> (Redkit, RedisServer) {
        let server = RedisServer::new();
        let mut config = fast_config(&server.url());
        config.fallback = false;
        (on_redis(config).await, server)
    }

    redkit::queue_conformance_tests!(make);
}

mod fallback_while_redis_is_up {
    use super::*;

    async fn make() -> (Redkit, RedisServer) {
        let server = RedisServer::new();
        let mut config = fast_config(&server.url());
        config.key_prefix = "app:".to_owned();
        (on_redis(config).await, server)
    }

    redkit::queue_conformance_tests!(make);
}
