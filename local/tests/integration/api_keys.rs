use bytes::Bytes;
use http::Method;
use serde_json::{Value, json};

use crate::stack::{APP_SECRET, TestStack, VERIFY_TOKEN, answer};

fn key_hash(key: &str) -> String {
    shared::domain::api_key::key_hash(key)
}

async fn get_with(t: &TestStack, path: &str, headers: &[(&str, &str)]) -> crate::stack::Answer {
    answer(t.request(Method::GET, path, headers, Bytes::new()).await)
}

#[tokio::test]
async fn requests_without_a_valid_key_get_401_before_any_handler_runs() {
    let t = TestStack::new().await;
    get_with(&t, "/api/campaigns", &[]).await.assert_error(401, "X-API-Key");
    get_with(&t, "/api/campaigns", &[("x-api-key", "")]).await.assert_error(401, "API key is required");
    let wrong = format!("wak_{}", "0".repeat(64));
    get_with(&t, "/api/campaigns", &[("x-api-key", &wrong)]).await.assert_error(401, "not valid");
    get_with(&t, "/api/campaigns", &[("authorization", &format!("Bearer {wrong}"))])
        .await
        .assert_error(401, "not valid");
    get_with(&t, "/api/campaigns", &[("authorization", "Basic dXNlcjpwYXNz")]).await.assert_error(401, "Bearer <key>");
    // A key is checked whole: its prefix, or the key with a character more, is not it.
    get_with(&t, "/api/campaigns", &[("x-api-key", &t.api_key[..20])]).await.assert_error(401, "not valid");
    get_with(&t, "/api/campaigns", &[("x-api-key", &format!("{}0", t.api_key))]).await.assert_error(401, "not valid");

    // Refused before the handler: nothing is written.
    let account = json!({"name": "Acme", "phone_number_id": "1065", "business_account_id": "1022",
                         "access_token": "EAAG-secret", "messaging_limit_tier": "TIER_1K"});
    let headers = [("content-type", "application/json")];
    let refused = t.request(Method::POST, "/api/accounts", &headers, Bytes::from(account.to_string())).await;
    answer(refused).assert_error(401, "API key");
    assert_eq!(t.get("/api/accounts").await.assert_ok(200)["total"], 0);

    // Both header forms open every route.
    let key = t.api_key.clone();
    get_with(&t, "/api/campaigns", &[("x-api-key", &key)]).await.assert_ok(200);
    get_with(&t, "/api/campaigns", &[("authorization", &format!("Bearer {key}"))]).await.assert_ok(200);
    get_with(&t, "/api/campaigns", &[("authorization", &format!("bearer {key}"))]).await.assert_ok(200);
    // An unknown route is a 404 with or without a key, as in API Gateway.
    get_with(&t, "/api/nothing", &[]).await.assert_error(404, "no route");
}

#[tokio::test]
async fn a_key_is_shown_once_listed_without_its_secret_and_revoked_at_once() {
    let t = TestStack::new().await;
    let created = t.post("/api/keys", json!({"name": "ci deploy"})).await;
    let k = created.assert_ok(201).clone();
    let (id, key) = (k["id"].as_str().unwrap().to_string(), k["key"].as_str().unwrap().to_string());
    assert!(key.starts_with("wak_") && key.len() == 68, "{key}");
    assert!(key[4..].chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!((k["name"].as_str(), k["prefix"].as_str()), (Some("ci deploy"), Some(&key[..12])));
    assert!(k["created_at"].is_string());

    // The new key works; the listing shows it without the key or its hash.
    get_with(&t, "/api/accounts", &[("x-api-key", &key)]).await.assert_ok(200);
    let listed = t.get("/api/keys").await;
    let items = listed.assert_ok(200)["items"].as_array().unwrap().clone();
    assert_eq!(listed.data()["total"], 2, "the stack's key and this one");
    let mine = items.iter().find(|i| i["id"] == id.as_str()).unwrap();
    let fields: Vec<&str> = mine.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(fields, ["id", "name", "prefix", "created_at", "last_used_at"]);
    let text = listed.body.to_string();
    assert!(!text.contains(&key) && !text.contains(&key[12..]) && !text.contains(&key_hash(&key)), "{text}");

    // The table keeps the hash only.
    let stored = t.item(format!("APIKEY#{}", key_hash(&key)), "APIKEY").await.expect("stored under its hash");
    assert!(stored.values().all(|v| !v.as_s().is_ok_and(|s| s.contains(&key[12..]))), "{stored:?}");

    // Revoked: refused at once; a second revoke and unknown ids are 404.
    t.delete(&format!("/api/keys/{id}")).await.assert_ok(200);
    get_with(&t, "/api/accounts", &[("x-api-key", &key)]).await.assert_error(401, "not valid");
    get_with(&t, "/api/accounts", &[("authorization", &format!("Bearer {key}"))]).await.assert_error(401, "revoked");
    t.delete(&format!("/api/keys/{id}")).await.assert_error(404, "not found");
    t.delete("/api/keys/not-a-uuid").await.assert_error(404, "not found");
    assert!(t.item(format!("APIKEY#{}", key_hash(&key)), "APIKEY").await.is_none());
    assert_eq!(t.get("/api/keys").await.assert_ok(200)["total"], 1);

    // Input is checked like any other.
    t.post("/api/keys", json!({})).await.assert_error(422, "name is required");
    t.post("/api/keys", json!({"name": " "})).await.assert_error(422, "name");
    t.post("/api/keys", json!({"name": "x", "key": "mine"})).await.assert_error(422, "unknown field 'key'");
    t.get("/api/keys?limit=0").await.assert_error(400, "limit");
}

#[tokio::test]
async fn a_key_may_revoke_itself_and_is_refused_afterwards() {
    let t = TestStack::new().await;
    let own = t.get("/api/keys").await.assert_ok(200)["items"][0]["id"].as_str().unwrap().to_string();
    t.delete(&format!("/api/keys/{own}")).await.assert_ok(200);
    t.get("/api/keys").await.assert_error(401, "not valid");
}

#[tokio::test]
async fn the_webhook_stays_public_and_signature_checked() {
    let t = TestStack::new().await;
    let verify = format!("/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=42");
    let res = t.request(Method::GET, &verify, &[], Bytes::new()).await;
    assert_eq!((res.status().as_u16(), res.body().as_str()), (200, "42"));
    let body = r#"{"object":"whatsapp_business_account","entry":[]}"#;
    let unsigned = t.request(Method::POST, "/webhooks/whatsapp", &[], Bytes::from(body)).await;
    answer(unsigned).assert_error(401, "X-Hub-Signature-256");
    let signature = shared::adapters::signature::sign(APP_SECRET.as_bytes(), body.as_bytes());
    let headers = [("x-hub-signature-256", signature.as_str())];
    answer(t.request(Method::POST, "/webhooks/whatsapp", &headers, body.into()).await).assert_ok(200);
}

#[tokio::test]
async fn the_local_server_checks_the_key_before_it_reads_a_body() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = TestStack::new().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(axum::serve(listener, local::server::router(t.app.clone())).into_future());
    let big = vec![b'a'; shared::http::MAX_BODY_BYTES + 10];
    let head = format!(
        "POST /api/campaigns/0b6f4c6e-0000-4000-8000-000000000000/recipients/import HTTP/1.1\r\nhost: x\r\ncontent-type: text/csv\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        big.len()
    );
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let _ = s.write_all(&big).await;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 401"), "{}", &out[..out.len().min(300)]);
    assert!(out.contains(r#""status":"error""#) && out.contains(r#""data":null"#), "{out}");
}

/// The authorizer's sample event with the given headers in place of its own.
fn authorizer_event(headers: Value) -> Value {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events/authorizer.json");
    let mut event: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    event["headers"] = headers;
    event
}

#[tokio::test]
async fn the_authorizer_function_answers_simple_responses_with_the_same_check() {
    let t = TestStack::new().await;
    let ask = |headers: Value| authorize(&t, authorizer_event(headers));
    let yes = ask(json!({"x-api-key": t.api_key})).await;
    assert_eq!(yes["isAuthorized"], true);
    assert!(yes["context"]["api_key_id"].is_string());
    let bearer = ask(json!({"authorization": format!("Bearer {}", t.api_key)})).await;
    assert_eq!(bearer["isAuthorized"], true);
    // A refusal is passed on to the route's function, which answers it in the envelope.
    for headers in [json!({}), json!({"x-api-key": "wak_wrong"}), json!({"authorization": "Basic eDp5"})] {
        let no = ask(headers).await;
        assert_eq!((no["isAuthorized"].as_bool(), no["context"]["refused_status"].as_u64()), (Some(true), Some(401)));
        assert!(no["context"].get("api_key_id").is_none(), "{no}");
    }
    let junk = authorize(&t, json!({"headers": "x"})).await;
    assert_eq!(junk, json!({"isAuthorized": false, "context": {}}));
}

/// The authorizer's answer as API Gateway reads it.
async fn authorize(t: &TestStack, event: Value) -> Value {
    serde_json::to_value(shared::http::auth::authorizer(t.app.clone(), event).await.unwrap()).unwrap()
}

/// A route function's answer to its sample event with `authorizer` as the authorizer's part
/// of the request context (none when null).
async fn route_function(t: &TestStack, name: &str, authorizer: Value) -> (u16, Value) {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../events/{name}.json"));
    let mut event: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    match authorizer {
        Value::Null => event["requestContext"].as_object_mut().unwrap().remove("authorizer"),
        a => event["requestContext"]["authorizer"].as_object_mut().unwrap().insert("lambda".into(), a),
    };
    let req = lambda_http::request::from_str(&event.to_string()).unwrap();
    let res = shared::lambda::answer(t.app.clone(), &shared::http::routes(name), req).await;
    let status = res.status().as_u16();
    let body = match res.into_body() {
        lambda_http::Body::Text(t) => serde_json::from_str(&t).unwrap(),
        other => panic!("not a text body: {other:?}"),
    };
    (status, body)
}

#[tokio::test]
async fn in_aws_the_route_function_answers_the_authorizers_refusal_in_the_envelope_and_fails_closed() {
    let t = TestStack::new().await;
    let ask = |headers: Value| authorize(&t, authorizer_event(headers));
    let accepted = ask(json!({"x-api-key": t.api_key})).await["context"].clone();
    let (status, body) = route_function(&t, "list-campaigns", accepted).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("success")), "{body}");

    let refused = ask(json!({"x-api-key": "wak_wrong"})).await["context"].clone();
    let (status, body) = route_function(&t, "list-campaigns", refused).await;
    assert_eq!(status, 401);
    assert_eq!(
        body,
        json!({"status": "error", "message": "the API key is not valid (unknown or revoked)", "data": null})
    );
    // No verdict at all (the authorizer detached): refused as well.
    let (status, body) = route_function(&t, "list-campaigns", Value::Null).await;
    assert_eq!((status, body["data"].is_null()), (401, true), "{body}");
    assert!(body["message"].as_str().unwrap().contains("X-API-Key"));
}

#[tokio::test]
async fn the_bootstrap_function_makes_a_working_key() {
    let t = TestStack::new().await;
    let made = shared::http::auth::bootstrap(t.app.clone(), json!({"name": "first key"})).await.unwrap();
    let key = made["key"].as_str().unwrap();
    get_with(&t, "/api/keys", &[("x-api-key", key)]).await.assert_ok(200);
    let err = shared::http::auth::bootstrap(t.app.clone(), json!({})).await.unwrap_err();
    assert!(err.contains("name is required"), "{err}");
}

#[tokio::test]
async fn a_development_key_is_registered_once() {
    use shared::domain::api_key::NewApiKey;
    let t = TestStack::new().await;
    let new = || NewApiKey { name: "local development key".into() };
    shared::usecases::keys::register(&t.app.db, new(), "my-dev-key-123".into()).await.unwrap();
    shared::usecases::keys::register(&t.app.db, new(), "my-dev-key-123".into()).await.unwrap();
    get_with(&t, "/api/keys", &[("x-api-key", "my-dev-key-123")]).await.assert_ok(200);
    assert_eq!(t.get("/api/keys").await.assert_ok(200)["total"], 2);
    let err = shared::usecases::keys::register(&t.app.db, new(), "has space".into()).await.unwrap_err();
    assert_eq!(err.kind, shared::error::ErrorKind::Invalid);
}
