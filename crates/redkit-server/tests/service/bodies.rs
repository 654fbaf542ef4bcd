//! Property tests on request bodies: whatever JSON (or not-JSON) a client
//! sends to the writing routes, the answer is a success or a 4xx in the
//! service's error shape — never a 500, never a panic — and a refused
//! request changes nothing.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

use crate::support::{Client, start};

/// JSON values a hostile client would send: the right field names with
/// wrong types, lengths and characters, unknown fields, deep nesting.
fn hostile_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        any::<String>().prop_map(Value::from),
        "[ a-z\\u{0}-\\u{1f}\\u{202e}é]{0,300}".prop_map(Value::from),
    ];
    let value = leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map("[a-z_]{1,12}", inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    });
    let field = prop_oneof![
        Just("title".to_owned()),
        Just("description".to_owned()),
        Just("done".to_owned()),
        Just("due_at".to_owned()),
        Just("username".to_owned()),
        Just("password".to_owned()),
        "[a-z]{1,8}",
    ];
    prop_oneof![
        value.clone(),
        proptest::collection::btree_map(field, value, 0..5)
            .prop_map(|map| Value::Object(map.into_iter().collect())),
    ]
}

#[test]
fn hostile_bodies_get_a_4xx_in_the_error_shape_and_change_nothing() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (server, mut alice, task_id) = runtime.block_on(async {
        let server = start(None).await;
        let mut alice = Client::registered(&server, "alice").await;
        let created = alice.post("/tasks", json!({"title": "keep me"})).await;
        let id = created.body["id"].as_i64().unwrap();
        (server, alice, id)
    });
    // The task as it should be: updated by accepted PATCHes only.
    let expected = std::sync::Mutex::new(
        runtime
            .block_on(alice.get(&format!("/tasks/{task_id}")))
            .body,
    );
    let mut runner = TestRunner::new(Config {
        cases: 1500,
        failure_persistence: None,
        ..Config::default()
    });
    let routes = proptest::sample::select(vec![
        ("POST", "/tasks".to_owned()),
        ("PATCH", format!("/tasks/{task_id}")),
        ("POST", "/auth/login".to_owned()),
    ]);
    runner
        .run(&(routes, hostile_json()), |((method, path), body)| {
            runtime.block_on(async {
                // `Client` carries its cookie in itself; each case sends as Alice.
                let mut alice = alice.clone();
                let reply = alice.send(method, &path, Some(body.clone())).await;
                match reply.status {
                    200 | 201 => {}
                    400 | 401 | 413 | 415 | 422 => {
                        prop_assert!(
                            reply.body["error"]["code"].is_string()
                                && reply.body["error"]["message"].is_string(),
                            "{method} {path} {body}: {:?}",
                            reply.body
                        );
                    }
                    other => {
                        prop_assert!(false, "{method} {path} {body}: {other} {:?}", reply.body)
                    }
                }
                if method == "PATCH" {
                    let now = alice.get(&format!("/tasks/{task_id}")).await.body;
                    let mut expected = expected.lock().unwrap();
                    if reply.status == 200 {
                        *expected = now;
                    } else {
                        prop_assert_eq!(&now, &*expected, "a refused PATCH changed the task");
                    }
                }
                Ok(())
            })
        })
        .unwrap();
    // A login body never logs Alice out as someone else or breaks her session.
    let me = runtime.block_on(alice.get("/auth/me"));
    assert!(matches!(me.status, 200 | 401), "{me:?}");
    runtime.block_on(server.stop());
}
