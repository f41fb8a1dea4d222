use http::Method;
use serde_json::json;

use crate::stack::TestStack;

#[tokio::test]
async fn unknown_routes_methods_ids_and_query_values() {
    let t = TestStack::new().await;
    t.get("/api/nothing").await.assert_error(404, "no route for GET /api/nothing");
    t.call(Method::PATCH, "/api/campaigns", None, "").await.assert_error(405, "GET, POST");
    let patch = t.raw(Method::PATCH, "/api/campaigns/0b6f4c6e-0000-4000-8000-000000000000", &[], "".into()).await;
    assert_eq!(patch.status(), 405);
    assert_eq!(patch.headers()["allow"], "GET, PUT, DELETE", "a 405 names the methods the path takes");
    t.get("/api/campaigns/not-a-uuid").await.assert_error(404, "campaign not-a-uuid not found");
    t.get("/api/campaigns/0b6f4c6e-0000-4000-8000-000000000000").await.assert_error(404, "not found");
    t.get("/api/campaigns?page=0").await.assert_error(400, "page");
    t.get("/api/campaigns?limit=500").await.assert_error(400, "limit");
    t.get("/api/campaigns?status=running").await.assert_error(400, "status must be one of");
    let defaults = t.get("/api/campaigns").await;
    let d = defaults.assert_ok(200);
    assert_eq!((d["page"].as_u64(), d["limit"].as_u64(), d["total"].as_u64()), (Some(1), Some(20), Some(0)));
    let xml = t.call(Method::POST, "/api/accounts", Some("application/xml"), "<a/>").await;
    xml.assert_error(415, "application/xml");
}

#[tokio::test]
async fn the_local_server_answers_over_http_and_refuses_bodies_over_the_lambda_limit() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = TestStack::new().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(axum::serve(listener, local::server::router(t.app.clone())).into_future());

    async fn raw(addr: std::net::SocketAddr, head: String, body: &[u8]) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(head.as_bytes()).await.unwrap();
        let _ = s.write_all(body).await;
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).to_string()
    }
    let body = json!({"name": "A", "phone_number_id": "1", "business_account_id": "2", "access_token": "t",
                      "messaging_limit_tier": "TIER_2K"})
    .to_string();
    let head = format!(
        "POST /api/accounts HTTP/1.1\r\nhost: x\r\nx-api-key: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        t.api_key,
        body.len()
    );
    let answer = raw(addr, head, body.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    assert!(answer.contains("\"messaging_limit_tier\":\"TIER_2K\""), "{answer}");

    let big = vec![b'a'; shared::http::MAX_BODY_BYTES + 10];
    let head = format!(
        "POST /api/campaigns/0b6f4c6e-0000-4000-8000-000000000000/recipients/import HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: text/csv\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        t.api_key,
        big.len()
    );
    let answer = raw(addr, head, &big).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{}", &answer[..answer.len().min(300)]);
    assert!(answer.contains("Split the file"), "{answer}");
}
