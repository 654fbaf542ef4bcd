//! The HTTP API of one instance, run on the embedded store and on a real
//! redis-server: auth, tasks, errors, caching, rate limits, events.

use std::time::Duration;

use redkit::config::RedisConfig;
use redkit_testkit::RedisServer;
use serde_json::json;

use crate::support::{Client, Events, TestDb, fast_redis_config, start, start_with, test_config};

/// Runs `$name` once on the embedded store and once on a real redis-server.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(None).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let server = redkit_testkit::RedisServer::new();
                    super::$name(Some(crate::support::fast_redis_config(&server.url()))).await;
                }
            )*
        }
    };
}

on_both_stores!(
    register_login_logout_and_me,
    tasks_crud_is_scoped_to_their_owner,
    bad_requests_get_clear_json_errors_and_change_nothing,
    task_lists_are_cached_and_writes_invalidate_them,
    events_stream_the_users_own_changes,
    task_lists_are_paginated_by_id,
);

/// The `after` of a `Link: <…>; rel="next"` header, if any.
fn next_after(reply: &crate::support::Reply) -> Option<String> {
    let link = reply.headers.get("link")?.to_str().unwrap().to_owned();
    assert!(link.ends_with("rel=\"next\""), "{link}");
    let target = link.trim_start_matches('<').split('>').next().unwrap();
    Some(target.split("after=").nth(1).unwrap().to_owned())
}

fn titles(reply: &crate::support::Reply) -> Vec<String> {
    reply
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|task| task["title"].as_str().unwrap().to_owned())
        .collect()
}

async fn task_lists_are_paginated_by_id(redis: Option<RedisConfig>) {
    let server = start(redis).await;
    let mut alice = Client::registered(&server, "alice").await;
    let mut bob = Client::registered(&server, "bob").await;
    for n in 1..=7 {
        assert_eq!(
            alice
                .post("/tasks", json!({"title": format!("a{n}")}))
                .await
                .status,
            201
        );
    }
    assert_eq!(bob.post("/tasks", json!({"title": "b1"})).await.status, 201);

    // Pages of 3 by id, following Link until it is absent.
    let mut pages = Vec::new();
    let mut path = "/tasks?limit=3".to_owned();
    loop {
        let reply = alice.get(&path).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        pages.push(titles(&reply));
        match next_after(&reply) {
            Some(after) => path = format!("/tasks?limit=3&after={after}"),
            None => break,
        }
    }
    assert_eq!(
        pages,
        vec![vec!["a1", "a2", "a3"], vec!["a4", "a5", "a6"], vec!["a7"]]
    );
    // The default page holds everything here, with no Link.
    let all = alice.get("/tasks").await;
    assert_eq!(titles(&all).len(), 7);
    assert!(all.headers.get("link").is_none());

    // Pages are cached, and a write invalidates every page of the user.
    let last_after = {
        let second = alice.get("/tasks?limit=3&after=0").await;
        next_after(&second).unwrap()
    };
    assert_eq!(
        alice.post("/tasks", json!({"title": "a8"})).await.status,
        201
    );
    let page = alice.get("/tasks?limit=3&after=0").await;
    assert_eq!(titles(&page), vec!["a1", "a2", "a3"]);
    let rest = alice
        .get(&format!("/tasks?limit=100&after={last_after}"))
        .await;
    assert_eq!(titles(&rest), vec!["a4", "a5", "a6", "a7", "a8"]);

    // Bad parameters are named; nothing else is accepted.
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=abc", "limit"),
        ("limit=", "limit"),
        ("limit=99999999999999999999999", "limit"),
        ("after=-1", "after"),
        ("after=1.5", "after"),
        ("limit=1&limit=2", "limit"),
        ("page=2", "query"),
        ("limit=%31", "limit"),
    ] {
        let reply = alice.get(&format!("/tasks?{query}")).await;
        assert_eq!(reply.status, 422, "{query}: {reply:?}");
        let message = reply.body["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(field), "{query}: {message}");
        assert!(message.contains("expected"), "{query}: {message}");
    }
    // `limit` is bounded at 1000: a user with many tasks never gets them all at once.
    let bounded = alice.get("/tasks?limit=1000").await;
    assert_eq!(bounded.status, 200);
    assert_eq!(titles(&bob.get("/tasks").await), vec!["b1"]);
    server.stop().await;
}

async fn register_login_logout_and_me(redis: Option<RedisConfig>) {
    let server = start(redis).await;
    let mut alice = Client::new(&server);
    let reply = alice.register("alice", "correct horse").await;
    assert_eq!(reply.body["username"], "alice");
    assert!(reply.body["id"].as_i64().unwrap() > 0);
    assert!(
        reply.body.get("password_hash").is_none(),
        "{:?}",
        reply.body
    );
    let cookie = reply.headers["set-cookie"].to_str().unwrap();
    for attribute in [
        "redkit_session=",
        "HttpOnly",
        "SameSite=Lax",
        "Path=/",
        "Max-Age=86400",
    ] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "{cookie}");
    let registered = alice.cookie.clone().unwrap();

    let me = alice.get("/auth/me").await;
    assert_eq!(me.status, 200);
    assert_eq!(
        (me.body["username"].as_str(), me.body["sessions"].as_u64()),
        (Some("alice"), Some(1))
    );

    // Taken, whatever the case.
    let mut other = Client::new(&server);
    let reply = other
        .post(
            "/auth/register",
            json!({"username": "ALICE", "password": "whatever123"}),
        )
        .await;
    assert_eq!(reply.status, 409, "{reply:?}");
    assert_eq!(reply.body["error"]["code"], "username_taken");

    // Wrong password and unknown user: the same 401.
    let mut stranger = Client::new(&server);
    let wrong = stranger.login("alice", "wrong password").await;
    let unknown = stranger.login("nobody", "wrong password").await;
    assert_eq!((wrong.status, unknown.status), (401, 401));
    assert_eq!(wrong.body, unknown.body);
    assert!(stranger.cookie.is_none());

    // Login with the session from registration: the id changes and the old
    // one is no longer valid (session fixation).
    let reply = alice.login("alice", "correct horse").await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let logged_in = alice.cookie.clone().unwrap();
    assert_ne!(logged_in, registered);
    let mut old = Client {
        cookie: Some(registered),
        ..alice.clone()
    };
    assert_eq!(old.get("/auth/me").await.status, 401);
    assert_eq!(alice.get("/auth/me").await.status, 200);

    // A second device, then logout of the first only.
    let mut phone = Client::new(&server);
    assert_eq!(phone.login("alice", "correct horse").await.status, 200);
    assert_eq!(alice.get("/auth/me").await.body["sessions"], 2);
    let reply = alice.post("/auth/logout", json!({})).await;
    assert_eq!(reply.status, 204);
    assert!(
        reply.headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let mut after = Client {
        cookie: Some(logged_in),
        ..alice.clone()
    };
    let reply = after.get("/auth/me").await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.body["error"]["code"], "unauthorized");
    assert_eq!(phone.get("/auth/me").await.status, 200);

    // Logout everywhere.
    let mut laptop = Client::new(&server);
    laptop.login("alice", "correct horse").await;
    let reply = phone.post("/auth/logout-all", json!({})).await;
    assert_eq!((reply.status, reply.body["ended"].as_u64()), (200, Some(2)));
    assert_eq!(laptop.get("/auth/me").await.status, 401);
    server.stop().await;
}

#[tokio::test]
async fn the_cookie_is_secure_when_configured() {
    let db = TestDb::new();
    let mut config = test_config(&db.path());
    config.cookie_secure = true;
    let server = start_with(None, db, config).await;
    let reply = Client::new(&server).register("sam", "long enough").await;
    assert!(
        reply.headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("; Secure")
    );
    server.stop().await;
}

/// Past `max_tasks_per_user`, a create gets 409 naming the limit and
/// creates nothing; another user is not affected; a delete makes room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_at_the_task_limit_gets_409_until_a_delete_makes_room() {
    let db = TestDb::new();
    let mut config = test_config(&db.path());
    config.max_tasks_per_user = 3;
    let server = start_with(None, db, config).await;
    let mut alice = Client::registered(&server, "alice").await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let reply = alice
            .post("/tasks", json!({"title": format!("task {i}")}))
            .await;
        assert_eq!(reply.status, 201, "{:?}", reply.body);
        ids.push(reply.body["id"].as_i64().unwrap());
    }
    let refused = alice.post("/tasks", json!({"title": "one too many"})).await;
    assert_eq!(refused.status, 409, "{:?}", refused.body);
    assert_eq!(refused.body["error"]["code"], "task_limit");
    let message = refused.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("3 tasks"), "{message}");
    assert_eq!(alice.get("/tasks").await.body.as_array().unwrap().len(), 3);
    let mut bob = Client::registered(&server, "bob").await;
    assert_eq!(
        bob.post("/tasks", json!({"title": "bob's"})).await.status,
        201
    );
    let deleted = alice
        .send("DELETE", &format!("/tasks/{}", ids[0]), None)
        .await;
    assert_eq!(deleted.status, 204);
    let again = alice.post("/tasks", json!({"title": "room again"})).await;
    assert_eq!(again.status, 201, "{:?}", again.body);
    server.stop().await;
}

/// Past `max_accounts`, a registration gets 409 naming the limit and
/// creates nothing (no session either); the accounts that exist keep
/// working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_past_the_account_limit_get_409() {
    let db = TestDb::new();
    let mut config = test_config(&db.path());
    config.max_accounts = 2;
    let server = start_with(None, db, config).await;
    let mut alice = Client::registered(&server, "alice").await;
    Client::registered(&server, "bob").await;
    let mut carol = Client::new(&server);
    let refused = carol
        .post(
            "/auth/register",
            json!({"username": "carol", "password": "carol-password"}),
        )
        .await;
    assert_eq!(refused.status, 409, "{:?}", refused.body);
    assert_eq!(refused.body["error"]["code"], "account_limit");
    let message = refused.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("2 accounts"), "{message}");
    assert_eq!(
        carol.get("/tasks").await.status,
        401,
        "no session was started"
    );
    let login = carol.login("carol", "carol-password").await;
    assert_eq!(login.status, 401, "carol was not created: {:?}", login.body);
    assert_eq!(
        alice
            .post("/tasks", json!({"title": "still here"}))
            .await
            .status,
        201
    );
    server.stop().await;
}

async fn tasks_crud_is_scoped_to_their_owner(redis: Option<RedisConfig>) {
    let server = start(redis).await;
    let mut alice = Client::registered(&server, "alice").await;
    let mut bob = Client::registered(&server, "bob").await;

    let created = alice
        .post(
            "/tasks",
            json!({"title": "  write tests  ", "description": "all of them", "done": false}),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    let id = created.body["id"].as_i64().unwrap();
    assert_eq!(created.body["title"], "write tests");
    assert_eq!(created.body["done"], false);
    let minimal = alice.post("/tasks", json!({"title": "second"})).await;
    assert_eq!(
        (minimal.status, &minimal.body["description"]),
        (201, &json!(""))
    );

    let list = alice.get("/tasks").await;
    assert_eq!(list.status, 200);
    let titles: Vec<&str> = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["write tests", "second"]);
    assert_eq!(
        alice.get(&format!("/tasks/{id}")).await.body["title"],
        "write tests"
    );

    let patched = alice
        .send(
            "PATCH",
            &format!("/tasks/{id}"),
            Some(json!({"done": true})),
        )
        .await;
    assert_eq!(patched.status, 200, "{patched:?}");
    assert_eq!(
        (
            patched.body["done"].as_bool(),
            patched.body["title"].as_str()
        ),
        (Some(true), Some("write tests"))
    );
    assert_eq!(alice.get(&format!("/tasks/{id}")).await.body["done"], true);

    // Bob sees none of it and can change none of it: 404, not 403.
    assert_eq!(bob.get("/tasks").await.body, json!([]));
    for (method, body) in [
        ("GET", None),
        ("PATCH", Some(json!({"title": "mine"}))),
        ("DELETE", None),
    ] {
        let reply = bob.send(method, &format!("/tasks/{id}"), body).await;
        assert_eq!(reply.status, 404, "{method}: {reply:?}");
        assert_eq!(reply.body["error"]["code"], "not_found");
    }
    assert_eq!(
        alice.get(&format!("/tasks/{id}")).await.body["title"],
        "write tests"
    );

    let deleted = alice.send("DELETE", &format!("/tasks/{id}"), None).await;
    assert_eq!(deleted.status, 204);
    assert_eq!(alice.get(&format!("/tasks/{id}")).await.status, 404);
    assert_eq!(
        alice
            .send("DELETE", &format!("/tasks/{id}"), None)
            .await
            .status,
        404
    );
    assert_eq!(alice.get("/tasks").await.body.as_array().unwrap().len(), 1);

    // Without a session: 401 everywhere.
    let mut anonymous = Client::new(&server);
    for path in ["/tasks", "/tasks/1", "/auth/me"] {
        assert_eq!(anonymous.get(path).await.status, 401, "{path}");
    }
    assert_eq!(
        anonymous.post("/tasks", json!({"title": "x"})).await.status,
        401
    );
    server.stop().await;
}

async fn bad_requests_get_clear_json_errors_and_change_nothing(redis: Option<RedisConfig>) {
    let db = TestDb::new();
    let mut config = test_config(&db.path());
    config.max_body_bytes = 4096;
    let server = start_with(redis, db, config).await;
    let mut alice = Client::registered(&server, "alice").await;
    let id = alice.post("/tasks", json!({"title": "keep me"})).await.body["id"]
        .as_i64()
        .unwrap();
    let task_path = format!("/tasks/{id}");

    /// Method, path, content type, body, expected status and error code.
    type Case<'a> = (&'a str, &'a str, &'a str, Vec<u8>, u16, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            "POST",
            "/tasks",
            "application/json",
            b"{\"title\": ".to_vec(),
            400,
            "malformed_json",
        ),
        (
            "POST",
            "/tasks",
            "application/json",
            b"not json".to_vec(),
            400,
            "malformed_json",
        ),
        (
            "POST",
            "/tasks",
            "text/plain",
            b"{\"title\": \"x\"}".to_vec(),
            415,
            "unsupported_media_type",
        ),
        (
            "POST",
            "/tasks",
            "application/json",
            b"{}".to_vec(),
            422,
            "invalid_field",
        ),
        (
            "POST",
            "/tasks",
            "application/json",
            b"{\"title\": 5}".to_vec(),
            422,
            "invalid_field",
        ),
        (
            "POST",
            "/tasks",
            "application/json",
            b"{\"title\": \"x\", \"owner\": 2}".to_vec(),
            422,
            "invalid_field",
        ),
        (
            "POST",
            "/tasks",
            "application/json",
            b"{\"title\": \"   \"}".to_vec(),
            422,
            "invalid_field",
        ),
        (
            "POST",
            "/tasks",
            "application/json",
            format!("{{\"title\": \"{}\"}}", "t".repeat(201)).into_bytes(),
            422,
            "invalid_field",
        ),
        (
            "POST",
            "/tasks",
            "application/json",
            b"{\"title\": \"a\\u0000b\"}".to_vec(),
            422,
            "invalid_field",
        ),
        (
            "POST",
            "/tasks",
            "application/json",
            format!(
                "{{\"title\": \"x\", \"description\": \"{}\"}}",
                "d".repeat(8000)
            )
            .into_bytes(),
            413,
            "body_too_large",
        ),
        (
            "PATCH",
            &task_path,
            "application/json",
            b"{}".to_vec(),
            422,
            "invalid_field",
        ),
        (
            "PATCH",
            &task_path,
            "application/json",
            b"{\"done\": \"yes\"}".to_vec(),
            422,
            "invalid_field",
        ),
        (
            "PATCH",
            &task_path,
            "application/json",
            b"{\"title\": \"\"}".to_vec(),
            422,
            "invalid_field",
        ),
        (
            "PATCH",
            "/tasks/abc",
            "application/json",
            b"{\"done\": true}".to_vec(),
            400,
            "bad_request",
        ),
        (
            "GET",
            "/tasks/-1",
            "application/json",
            Vec::new(),
            400,
            "bad_request",
        ),
        (
            "GET",
            "/tasks/99999999999999999999",
            "application/json",
            Vec::new(),
            400,
            "bad_request",
        ),
        (
            "GET",
            "/nowhere",
            "application/json",
            Vec::new(),
            404,
            "not_found",
        ),
        (
            "PUT",
            "/tasks",
            "application/json",
            b"{}".to_vec(),
            405,
            "method_not_allowed",
        ),
        (
            "POST",
            "/auth/register",
            "application/json",
            b"{\"username\": \"a\", \"password\": \"long enough\"}".to_vec(),
            422,
            "invalid_field",
        ),
        (
            "POST",
            "/auth/register",
            "application/json",
            b"{\"username\": \"bad name!\", \"password\": \"long enough\"}".to_vec(),
            422,
            "invalid_field",
        ),
        (
            "POST",
            "/auth/register",
            "application/json",
            b"{\"username\": \"fine\", \"password\": \"short\"}".to_vec(),
            422,
            "invalid_field",
        ),
        (
            "POST",
            "/auth/register",
            "application/json",
            b"{\"username\": \"fine\"}".to_vec(),
            422,
            "invalid_field",
        ),
    ];
    for (method, path, content_type, body, status, code) in cases {
        let shown = String::from_utf8_lossy(&body[..body.len().min(60)]).into_owned();
        let reply = alice.send_raw(method, path, content_type, body).await;
        assert_eq!(reply.status, status, "{method} {path} {shown}: {reply:?}");
        assert_eq!(
            reply.body["error"]["code"], code,
            "{method} {path} {shown}: {reply:?}"
        );
        let message = reply.body["error"]["message"].as_str().unwrap();
        assert!(!message.is_empty(), "{method} {path}");
    }
    // The messages name the field and what is expected.
    let reply = alice
        .post("/tasks", json!({"title": "t".repeat(201)}))
        .await;
    assert_eq!(
        reply.body["error"]["message"],
        "title: must be at most 200 characters, got 201"
    );
    let reply = alice
        .post(
            "/auth/register",
            json!({"username": "fine", "password": "short"}),
        )
        .await;
    assert!(
        reply.body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("password: must be 8 to 128")
    );

    // Nothing was written or changed by any of them.
    let list = alice.get("/tasks").await.body;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["title"], "keep me");
    assert_eq!(list[0]["done"], false);
    assert_eq!(
        Client::new(&server)
            .login("fine", "long enough")
            .await
            .status,
        401
    );
    server.stop().await;
}

/// The `tasks` cache counters from `/health/redis`, from a probe taken
/// after this call (the report comes from the background probe).
async fn cache_counts(client: &mut Client) -> (u64, u64, u64) {
    let asked = std::time::Instant::now();
    let report = loop {
        let report = client.get("/health/redis").await.body;
        let age = report["probe_age_ms"].as_u64().unwrap();
        if u128::from(age) + 5 < asked.elapsed().as_millis() {
            break report;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let tasks = report["caches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|cache| cache["name"] == "tasks")
        .unwrap_or_else(|| panic!("no tasks cache in {report}"))
        .clone();
    let count = |name: &str| {
        tasks["stats"][name]
            .as_u64()
            .unwrap_or_else(|| panic!("{name} in {tasks}"))
    };
    (count("l1_hits"), count("l2_hits"), count("misses"))
}

async fn task_lists_are_cached_and_writes_invalidate_them(redis: Option<RedisConfig>) {
    let db = TestDb::new();
    let mut config = test_config(&db.path());
    config.probe_interval = std::time::Duration::from_millis(100);
    let server = start_with(redis, db, config).await;
    let mut alice = Client::registered(&server, "alice").await;
    alice.post("/tasks", json!({"title": "one"})).await;
    let (l1, _, misses) = cache_counts(&mut alice).await;
    assert_eq!(alice.get("/tasks").await.body.as_array().unwrap().len(), 1);
    let (_, _, misses_after_first) = cache_counts(&mut alice).await;
    assert_eq!(misses_after_first, misses + 1, "the first read loads");
    for _ in 0..5 {
        assert_eq!(alice.get("/tasks").await.body.as_array().unwrap().len(), 1);
    }
    let (l1_after, _, misses_after) = cache_counts(&mut alice).await;
    assert_eq!(
        misses_after, misses_after_first,
        "later reads hit the cache"
    );
    assert!(l1_after >= l1 + 5, "{l1} -> {l1_after}");
    // A write invalidates the user's tag: the next read sees it.
    alice.post("/tasks", json!({"title": "two"})).await;
    assert_eq!(alice.get("/tasks").await.body.as_array().unwrap().len(), 2);
    let id = alice.get("/tasks").await.body[0]["id"].as_i64().unwrap();
    assert_eq!(alice.get(&format!("/tasks/{id}")).await.body["done"], false);
    alice
        .send(
            "PATCH",
            &format!("/tasks/{id}"),
            Some(json!({"done": true})),
        )
        .await;
    assert_eq!(alice.get(&format!("/tasks/{id}")).await.body["done"], true);
    assert_eq!(alice.get("/tasks").await.body[0]["done"], true);
    alice.send("DELETE", &format!("/tasks/{id}"), None).await;
    assert_eq!(alice.get(&format!("/tasks/{id}")).await.status, 404);
    assert_eq!(alice.get("/tasks").await.body.as_array().unwrap().len(), 1);
    server.stop().await;
}

async fn events_stream_the_users_own_changes(redis: Option<RedisConfig>) {
    let server = start(redis).await;
    let mut alice = Client::registered(&server, "alice").await;
    let mut bob = Client::registered(&server, "bob").await;
    let mut alice_events = Events::open(&alice).await;
    let mut bob_events = Events::open(&bob).await;

    let created = alice.post("/tasks", json!({"title": "live"})).await.body;
    let id = created["id"].as_i64().unwrap();
    alice
        .send(
            "PATCH",
            &format!("/tasks/{id}"),
            Some(json!({"done": true})),
        )
        .await;
    alice.send("DELETE", &format!("/tasks/{id}"), None).await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        let (name, data) = alice_events
            .next(Duration::from_secs(5))
            .await
            .expect("an event");
        assert_eq!(name, "task");
        seen.push(data);
    }
    assert_eq!(seen[0], json!({"type": "created", "task": created}));
    assert_eq!(
        (seen[1]["type"].as_str(), seen[1]["task"]["done"].as_bool()),
        (Some("updated"), Some(true))
    );
    assert_eq!(seen[2], json!({"type": "deleted", "id": id}));
    // Bob's stream carries nothing of Alice's.
    bob.post("/tasks", json!({"title": "bob's"})).await;
    let (_, data) = bob_events.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!(data["task"]["title"], "bob's");
    assert!(bob_events.next(Duration::from_millis(200)).await.is_none());

    // A stream ends with its session: after logout, a change made from a
    // new session is not sent to the old stream, which closes.
    let mut alice_again = Client::new(&server);
    assert_eq!(
        alice_again.login("alice", "alice-password").await.status,
        200
    );
    let mut fresh_events = Events::open(&alice_again).await;
    assert_eq!(alice.post("/auth/logout", json!({})).await.status, 204);
    alice_again
        .post("/tasks", json!({"title": "after logout"}))
        .await;
    assert!(alice_events.ends_within(Duration::from_secs(5)).await);
    let (_, data) = fresh_events.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!(data["task"]["title"], "after logout");

    // Shutdown ends the streams cleanly and is not held up by them.
    let stopped = tokio::time::timeout(Duration::from_secs(10), server.stop()).await;
    assert!(stopped.is_ok(), "shutdown waited on open event streams");
    assert!(fresh_events.ends_within(Duration::from_secs(5)).await);
    assert!(bob_events.ends_within(Duration::from_secs(5)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_and_register_are_rate_limited_by_the_auth_policy() {
    let db = TestDb::new();
    let mut config = test_config(&db.path());
    config.auth_policy = Some(crate::support::exact_policy(
        "auth",
        3,
        Duration::from_secs(300),
    ));
    let server = start_with(None, db, config).await;
    let mut client = Client::registered(&server, "carol").await;
    let first = client.login("carol", "wrong password").await;
    assert_eq!(first.status, 401);
    assert_eq!(
        first.headers["ratelimit-policy"].to_str().unwrap(),
        "\"auth\";q=3;w=300"
    );
    assert_eq!(client.login("carol", "carol-password").await.status, 200);
    let limited = client.login("carol", "carol-password").await;
    assert_eq!(limited.status, 429, "{limited:?}");
    assert!(
        limited.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0
    );
    assert_eq!(limited.body["error"]["code"], "rate_limited", "{limited:?}");
    // Other routes are not under the auth policy.
    assert_eq!(client.get("/tasks").await.status, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_policy_limits_task_routes() {
    let db = TestDb::new();
    let mut config = test_config(&db.path());
    config.api_policy = Some(crate::support::exact_policy(
        "api",
        5,
        Duration::from_secs(60),
    ));
    let redis = RedisServer::new();
    let redis = crate::support::patient(&fast_redis_config(&redis.url()));
    let server = start_with(Some(redis), db, config).await;
    let mut client = Client::registered(&server, "dave").await;
    let statuses: Vec<u16> = {
        let mut statuses = Vec::new();
        for _ in 0..7 {
            statuses.push(client.get("/tasks").await.status);
        }
        statuses
    };
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429]);
    let limited = client.get("/tasks").await;
    assert_eq!(
        limited.headers["ratelimit-policy"].to_str().unwrap(),
        "\"api\";q=5;w=60"
    );
    server.stop().await;
}
