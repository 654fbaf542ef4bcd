//! Due times, reminders across instances, and resumable event streams.

use std::time::{Duration, SystemTime};

use redkit_testkit::RedisServer;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::support::{
    Client, Events, TestDb, TestServer, fast_redis_config, start, start_with, test_config,
};

/// An RFC 3339 time `after` from now.
fn due_in(after: Duration) -> String {
    let at = OffsetDateTime::from(SystemTime::now() + after);
    at.format(&Rfc3339).unwrap()
}

/// The next event named `name` within `within`, skipping others.
async fn next_named(events: &mut Events, name: &str, within: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let (event, data) = events.next(left).await?;
        if event == name {
            return Some(data);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn due_at_is_validated_normalized_and_cleared() {
    let server = start(None).await;
    let mut alice = Client::registered(&server, "alice").await;
    for (bad, why) in [
        (json!("tomorrow"), "RFC 3339"),
        (json!("2020-01-01T00:00:00Z"), "future"),
        (json!("2030-13-01T00:00:00Z"), "RFC 3339"),
        (json!(12), ""),
    ] {
        let reply = alice
            .post("/tasks", json!({"title": "t", "due_at": bad}))
            .await;
        assert_eq!(reply.status, 422, "{bad}: {:?}", reply.body);
        assert!(reply.body.to_string().contains("due_at"), "{}", reply.body);
        assert!(reply.body.to_string().contains(why), "{}", reply.body);
    }
    let created = alice
        .post(
            "/tasks",
            json!({"title": "t", "due_at": "2099-06-01T10:00:00.123456+02:00"}),
        )
        .await;
    assert_eq!(created.status, 201);
    assert_eq!(created.body["due_at"], "2099-06-01T08:00:00.123Z");
    let id = created.body["id"].as_i64().unwrap();
    let path = format!("/tasks/{id}");
    let past = alice
        .send(
            "PATCH",
            &path,
            Some(json!({"due_at": "2001-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(past.status, 422);
    let unchanged = alice
        .send("PATCH", &path, Some(json!({"done": true})))
        .await;
    assert_eq!(unchanged.body["due_at"], "2099-06-01T08:00:00.123Z");
    let cleared = alice
        .send("PATCH", &path, Some(json!({"due_at": null})))
        .await;
    assert_eq!(cleared.status, 200);
    assert_eq!(cleared.body["due_at"], Value::Null);
    let plain = alice.post("/tasks", json!({"title": "no due"})).await;
    assert_eq!(plain.body["due_at"], Value::Null);
    server.stop().await;
}

/// On the embedded store: a reminder arrives when due, with an id, once; a
/// changed due time reminds only at the new time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reminder_arrives_when_due_on_the_embedded_store() {
    let server = start(None).await;
    let mut alice = Client::registered(&server, "alice").await;
    let mut events = Events::open(&alice).await;
    let due = due_in(Duration::from_millis(1500));
    let created = alice
        .post("/tasks", json!({"title": "call bob", "due_at": due}))
        .await
        .body;
    let moved = alice
        .post(
            "/tasks",
            json!({"title": "moved", "due_at": due_in(Duration::from_millis(1200))}),
        )
        .await
        .body;
    let moved_id = moved["id"].as_i64().unwrap();
    let later = due_in(Duration::from_millis(2500));
    alice
        .send(
            "PATCH",
            &format!("/tasks/{moved_id}"),
            Some(json!({"due_at": later})),
        )
        .await;
    let first = next_named(&mut events, "reminder", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(first["task"]["id"], created["id"]);
    assert_eq!(first["task"]["title"], "call bob");
    assert_eq!(first["due_at"], created["due_at"]);
    assert!(events.id.is_some(), "reminders carry an id");
    let second = next_named(&mut events, "reminder", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(second["task"]["id"], moved_id);
    assert_eq!(second["due_at"].as_str().unwrap()[..19], later[..19]);
    assert!(
        next_named(&mut events, "reminder", Duration::from_millis(1500))
            .await
            .is_none()
    );
    server.stop().await;
}

async fn pair(redis: &RedisServer, db: &TestDb) -> (TestServer, TestServer) {
    let config = test_config(&db.path());
    let a = start_with(
        Some(fast_redis_config(&redis.url())),
        db.clone(),
        config.clone(),
    )
    .await;
    let b = start_with(Some(fast_redis_config(&redis.url())), db.clone(), config).await;
    (a, b)
}

/// Two instances: a reminder scheduled on A reaches a stream on B once; a
/// deleted task's reminder never arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reminder_scheduled_on_a_arrives_on_b_once_and_deleted_tasks_stay_silent() {
    let redis = RedisServer::new();
    let db = TestDb::new();
    let (a, b) = pair(&redis, &db).await;
    let mut on_a = Client::registered(&a, "carol").await;
    let on_b = on_a.on(&b);
    let mut events = Events::open(&on_b).await;
    let kept = on_a
        .post(
            "/tasks",
            json!({"title": "kept", "due_at": due_in(Duration::from_millis(1500))}),
        )
        .await
        .body;
    let deleted = on_a
        .post(
            "/tasks",
            json!({"title": "deleted", "due_at": due_in(Duration::from_millis(1200))}),
        )
        .await
        .body;
    let deleted_id = deleted["id"].as_i64().unwrap();
    assert_eq!(
        on_a.send("DELETE", &format!("/tasks/{deleted_id}"), None)
            .await
            .status,
        204
    );
    let reminder = next_named(&mut events, "reminder", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(reminder["task"]["id"], kept["id"]);
    assert!(
        next_named(&mut events, "reminder", Duration::from_secs(2))
            .await
            .is_none(),
        "a second reminder (duplicate, or for the deleted task)"
    );
    a.stop().await;
    b.stop().await;
}

/// A is a separate process, SIGKILLed before the reminder it scheduled is
/// due; B delivers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reminder_survives_the_instance_that_scheduled_it() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let redis = RedisServer::new();
    let db = TestDb::new();
    let mut child = crate::support::redkit_binary()
        .args([
            "--listen",
            "127.0.0.1:0",
            "--auth-rate-limit",
            "1000/1m",
            "--api-rate-limit",
            "off",
        ])
        .arg("--db")
        .arg(db.path())
        .env("REDIS_URL", redis.url())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let address =
        tokio::task::spawn_blocking(move || crate::support::listening_address(&mut lines))
            .await
            .unwrap();
    let b = start_with(
        Some(fast_redis_config(&redis.url())),
        db.clone(),
        test_config(&db.path()),
    )
    .await;
    let mut on_a = Client::registered(&b, "dave").await;
    on_a.base = format!("http://{address}");
    let created = on_a
        .post(
            "/tasks",
            json!({"title": "survives", "due_at": due_in(Duration::from_millis(2000))}),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    child.kill().unwrap();
    child.wait().unwrap();
    let on_b = on_a.on(&b);
    let mut events = Events::open(&on_b).await;
    let reminder = next_named(&mut events, "reminder", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(reminder["task"]["id"], created.body["id"]);
    b.stop().await;
}

/// A client reconnecting with Last-Event-ID gets what it missed, then live
/// events without repeats; a malformed or too-old id gets a resync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_event_id_replays_missed_events_and_resyncs_unknown_ids() {
    let redis = RedisServer::new();
    let server = start(Some(fast_redis_config(&redis.url()))).await;
    let mut erin = Client::registered(&server, "erin").await;
    let mut events = Events::open(&erin).await;
    erin.post("/tasks", json!({"title": "one"})).await;
    let (_, one) = events.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!(one["task"]["title"], "one");
    let seen_id = events.id.clone().expect("task events carry an id");
    drop(events);
    erin.post("/tasks", json!({"title": "two"})).await;
    erin.post("/tasks", json!({"title": "three"})).await;

    let mut resumed = Events::open_after(&erin, Some(&seen_id)).await;
    let mut titles = Vec::new();
    for _ in 0..2 {
        let (name, data) = resumed.next(Duration::from_secs(5)).await.unwrap();
        assert_eq!(name, "task");
        assert!(resumed.id.is_some());
        titles.push(data["task"]["title"].as_str().unwrap().to_owned());
    }
    assert_eq!(titles, ["two", "three"]);
    erin.post("/tasks", json!({"title": "four"})).await;
    let (_, live) = resumed.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!(live["task"]["title"], "four");
    assert!(
        resumed.next(Duration::from_millis(300)).await.is_none(),
        "no repeats"
    );

    for bad in ["not-an-id", "1-0", "99999999999999-0"] {
        let mut stale = Events::open_after(&erin, Some(bad)).await;
        let (name, data) = stale.next(Duration::from_secs(5)).await.unwrap();
        assert_eq!(
            (name.as_str(), &data),
            ("task", &json!({"type": "resync"})),
            "{bad}"
        );
        erin.post("/tasks", json!({"title": "after resync"})).await;
        let (_, live) = stale.next(Duration::from_secs(5)).await.unwrap();
        assert_eq!(live["task"]["title"], "after resync");
    }
    server.stop().await;
}

/// An id the log no longer keeps (more events came after it than are kept)
/// gets a resync, never a silent gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_last_event_id_older_than_the_log_keeps_gets_a_resync() {
    let redis = RedisServer::new();
    let db = TestDb::new();
    let mut config = test_config(&db.path());
    config.events_kept = 3;
    let server = start_with(Some(fast_redis_config(&redis.url())), db, config).await;
    let mut frank = Client::registered(&server, "frank").await;
    let mut events = Events::open(&frank).await;
    frank.post("/tasks", json!({"title": "old"})).await;
    events.next(Duration::from_secs(5)).await.unwrap();
    let old_id = events.id.clone().unwrap();
    frank.post("/tasks", json!({"title": "kept"})).await;
    events.next(Duration::from_secs(5)).await.unwrap();
    let kept_id = events.id.clone().unwrap();
    // Three kept: "kept", "new 0", "new 1"; "old" is trimmed.
    for n in 0..2 {
        frank
            .post("/tasks", json!({"title": format!("new {n}")}))
            .await;
    }
    let mut stale = Events::open_after(&frank, Some(&old_id)).await;
    let (_, data) = stale.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!(data, json!({"type": "resync"}));
    assert!(stale.id.is_none());
    // The newest kept id still replays.
    let mut fresh = Events::open_after(&frank, Some(&kept_id)).await;
    for n in 0..2 {
        let (_, data) = fresh.next(Duration::from_secs(5)).await.unwrap();
        assert_eq!(data["task"]["title"], format!("new {n}"));
    }
    server.stop().await;
}
