//! What the benchmarks share (never deployed, not tests): a proxy in front of the emulator
//! that counts AWS requests by operation, CPU time of named threads, and API calls through the
//! dispatcher.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use http::Method;
use serde_json::Value;
use shared::api::{self, App, ROUTES};

/// Requests by AWS operation (`X-Amz-Target`), counted by a proxy in front of the emulator.
#[derive(Clone, Default)]
pub struct Counts(Arc<Mutex<HashMap<String, u64>>>);

impl Counts {
    pub fn snapshot(&self) -> HashMap<String, u64> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

struct Proxy {
    upstream: String,
    http: reqwest::Client,
    counts: Counts,
}

async fn forward(State(p): State<Arc<Proxy>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let target = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or("other").to_string();
    if let Ok(mut m) = p.counts.0.lock() {
        *m.entry(target).or_default() += 1;
    }
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    let url = format!("{}{}", p.upstream, parts.uri.path_and_query().map(|x| x.as_str()).unwrap_or("/"));
    let mut out = p.http.request(parts.method, url).body(bytes);
    for (k, v) in parts.headers.iter().filter(|(k, _)| *k != http::header::HOST) {
        out = out.header(k, v);
    }
    match out.send().await {
        Ok(r) => {
            let mut b = Response::builder().status(r.status());
            for (k, v) in r.headers() {
                b = b.header(k, v);
            }
            let body = r.bytes().await.unwrap_or_default();
            b.body(Body::from(body)).unwrap_or_default()
        }
        Err(e) => Response::builder().status(502).body(Body::from(e.to_string())).unwrap_or_default(),
    }
}

/// CPU seconds used so far by the threads whose name starts with `name` (a runtime built with
/// that thread name).
pub fn thread_cpu(prefix: &str) -> f64 {
    let ticks = 100.0; // USER_HZ on Linux
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else { continue };
        let Some((name, rest)) = stat.split_once(") ") else { continue };
        // `pid (name) state …`: the name follows the first parenthesis.
        if !name.split_once('(').is_some_and(|(_, n)| n.starts_with(prefix)) {
            continue;
        }
        let fields: Vec<&str> = rest.split_whitespace().collect();
        total += fields.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        total += fields.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    }
    total as f64 / ticks
}

pub async fn call(app: &Arc<App>, method: Method, path: &str, ct: &str, body: impl Into<Bytes>) -> Value {
    let req = http::Request::builder().method(method).uri(path).header("content-type", ct).body(body.into());
    let routes: Vec<_> = ROUTES.iter().collect();
    let res = api::dispatch(app.clone(), &routes, req.unwrap_or_default()).await;
    let v: Value = serde_json::from_str(res.body()).unwrap_or_default();
    if v["status"] != "success" {
        panic!("{path}: {v}");
    }
    v["data"].clone()
}

/// Requests per unit of work since `before`, in total and by operation.
pub fn per(counts: &HashMap<String, u64>, before: &HashMap<String, u64>, prefix: &str, n: usize) -> (f64, String) {
    let mut parts: Vec<(String, u64)> = counts
        .iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(k, v)| (k.trim_start_matches(prefix).to_string(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect();
    parts.sort_by_key(|p| std::cmp::Reverse(p.1));
    let total: u64 = parts.iter().map(|(_, v)| v).sum();
    let detail: Vec<String> = parts.iter().map(|(k, v)| format!("{k} {:.2}", *v as f64 / n as f64)).collect();
    (total as f64 / n as f64, detail.join(", "))
}

/// Starts the counting proxy in front of `upstream` (the emulator); returns its address.
pub async fn counting_proxy(upstream: String) -> std::io::Result<(SocketAddr, Counts)> {
    let counts = Counts::default();
    let proxy = Arc::new(Proxy { upstream, http: reqwest::Client::new(), counts: counts.clone() });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(axum::serve(listener, axum::Router::new().fallback(forward).with_state(proxy)).into_future());
    Ok((addr, counts))
}
