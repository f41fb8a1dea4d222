//! What the benchmarks share (never deployed, not tests): a proxy in front of the emulator
//! (one process for DynamoDB, one for the other services) that counts AWS requests by
//! operation and estimates DynamoDB's write units, CPU time of named threads, and API calls
//! through the dispatcher.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use http::Method;
use serde_json::Value;
use shared::app::App;
use shared::http::{self as api, ROUTES};

/// Requests by AWS operation (`X-Amz-Target`), counted by a proxy in front of the emulator,
/// and DynamoDB write units under the key [`WRITE_UNITS`] (in thousandths).
#[derive(Clone, Default)]
pub struct Counts(Arc<Mutex<HashMap<String, u64>>>);

/// The key of the estimated DynamoDB write units (thousandths) in [`Counts`].
pub const WRITE_UNITS: &str = "write-units-x1000";

impl Counts {
    pub fn snapshot(&self) -> HashMap<String, u64> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

/// Where the proxy forwards: DynamoDB's requests to one emulator, the rest to another (or
/// both to the same).
#[derive(Clone, Debug)]
pub struct Upstreams {
    pub dynamodb: String,
    pub other: String,
}

impl Upstreams {
    /// From the environment the scripts set: `AWS_ENDPOINT_URL`, and
    /// `AWS_ENDPOINT_URL_DYNAMODB` when DynamoDB has an emulator of its own.
    pub fn from_env() -> Result<Self, crate::BoxError> {
        let other = std::env::var("AWS_ENDPOINT_URL").map_err(|_| "AWS_ENDPOINT_URL must point at the emulator")?;
        let dynamodb = std::env::var("AWS_ENDPOINT_URL_DYNAMODB").unwrap_or_else(|_| other.clone());
        Ok(Upstreams { dynamodb, other })
    }
}

struct Proxy {
    upstreams: Upstreams,
    http: reqwest::Client,
    counts: Counts,
}

/// DynamoDB write request units a request costs, as on-demand bills them, estimated from the
/// request alone: 1 per item written (items here are under 1 KB), 2 per item of a transaction,
/// and 1 more per global secondary index entry a write adds or removes (2 when an index key is
/// set on an item that may have had an entry: the old entry goes, a new one comes; 1 when it is
/// set to a message id, `WAMID#…`, which is written once and never replaces an entry).
/// Condition checks and reads are not counted.
pub fn write_units(target: &str, body: &Value) -> f64 {
    const INDEX_KEYS: [&str; 3] = ["GSI1PK", "GSI2PK", "GSI3PK"];
    fn index_writes(update: &Value) -> f64 {
        let expr = update["UpdateExpression"].as_str().unwrap_or_default();
        let (set, remove) = match expr.split_once("REMOVE") {
            Some((set, remove)) => (set, remove),
            None => (expr, ""),
        };
        let set_cost = |key: &str| {
            let placeholder = set.split(&format!("{key} = ")).nth(1).and_then(|rest| rest.split([',', ' ']).next());
            let value = placeholder.and_then(|p| update["ExpressionAttributeValues"][p]["S"].as_str());
            if value.is_some_and(|v| v.starts_with("WAMID#")) { 1.0 } else { 2.0 }
        };
        let removed = INDEX_KEYS.iter().filter(|k| remove.contains(*k)).count() as f64;
        INDEX_KEYS.iter().filter(|k| set.contains(*k)).map(|k| set_cost(k)).sum::<f64>() + removed
    }
    let put_index = |item: &Value| INDEX_KEYS.iter().filter(|k| item.get(**k).is_some()).count() as f64;
    match target.trim_start_matches("DynamoDB_20120810.") {
        "UpdateItem" => 1.0 + index_writes(body),
        "PutItem" => 1.0 + put_index(&body["Item"]),
        "DeleteItem" => 1.0,
        "BatchWriteItem" => body["RequestItems"]
            .as_object()
            .into_iter()
            .flat_map(|tables| tables.values())
            .flat_map(|requests| requests.as_array().cloned().unwrap_or_default())
            .map(|r| match r.get("PutRequest") {
                Some(put) => 1.0 + put_index(&put["Item"]),
                None => 1.0,
            })
            .sum(),
        "TransactWriteItems" => body["TransactItems"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|item| {
                if let Some(u) = item.get("Update") {
                    2.0 + index_writes(u)
                } else if let Some(p) = item.get("Put") {
                    2.0 + put_index(&p["Item"])
                } else if item.get("Delete").is_some() {
                    2.0
                } else {
                    0.0 // ConditionCheck: read capacity
                }
            })
            .sum(),
        "BatchExecuteStatement" => body["Statements"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|st| {
                let text = st["Statement"].as_str().unwrap_or_default();
                if text.starts_with("UPDATE") { 1.0 + statement_index_writes(text, &st["Parameters"]) } else { 0.0 }
            })
            .sum(),
        _ => 0.0,
    }
}

/// The index entries a PartiQL `UPDATE` adds or removes, as [`write_units`] counts them for an
/// update expression.
fn statement_index_writes(text: &str, parameters: &Value) -> f64 {
    let head = text.split(" WHERE ").next().unwrap_or_default();
    let mut writes = 0.0;
    for key in ["GSI1PK", "GSI2PK", "GSI3PK"] {
        if head.contains(&format!("REMOVE \"{key}\"")) {
            writes += 1.0;
        }
        let set = format!("SET \"{key}\" = ?");
        if let Some(at) = head.find(&set) {
            let position = head[..at + set.len()].matches('?').count() - 1;
            let value = parameters[position]["S"].as_str().unwrap_or_default();
            writes += if value.starts_with("WAMID#") { 1.0 } else { 2.0 };
        }
    }
    writes
}

/// An emulator answer slower than this is counted (by operation, under [`SLOW_PREFIX`]): what
/// stalls the service locally shows there.
const SLOW: Duration = Duration::from_millis(500);
pub const SLOW_PREFIX: &str = "slow ";
/// The slowest DynamoDB answer (milliseconds) of each second, under this and the unix second.
pub const SLOWEST_PREFIX: &str = "slowest ddb @";

async fn forward(State(p): State<Arc<Proxy>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let target = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or("other").to_string();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    let units = if target.starts_with("DynamoDB_") {
        serde_json::from_slice::<Value>(&bytes).map(|b| write_units(&target, &b)).unwrap_or(0.0)
    } else {
        0.0
    };
    if let Ok(mut m) = p.counts.0.lock() {
        *m.entry(WRITE_UNITS.to_string()).or_default() += (units * 1000.0) as u64;
        *m.entry(target.clone()).or_default() += 1;
    }
    // DynamoDB and its streams (`DynamoDBStreams_…`) are one emulator.
    let upstream = if target.starts_with("DynamoDB") { &p.upstreams.dynamodb } else { &p.upstreams.other };
    let url = format!("{}{}", upstream, parts.uri.path_and_query().map(|x| x.as_str()).unwrap_or("/"));
    let mut out = p.http.request(parts.method, url).body(bytes.clone());
    for (k, v) in parts.headers.iter().filter(|(k, _)| *k != http::header::HOST) {
        out = out.header(k, v);
    }
    let asked_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let started = std::time::Instant::now();
    let answer = out.send().await;
    let took = started.elapsed();
    if target.starts_with("DynamoDB_")
        && let Ok(mut m) = p.counts.0.lock()
    {
        // The slowest DynamoDB answer of each second (by when it was asked).
        let slowest = m.entry(format!("{SLOWEST_PREFIX}{asked_at}")).or_default();
        *slowest = (*slowest).max(took.as_millis() as u64);
    }
    // (A receive waits for messages by design.)
    if took > SLOW
        && !target.ends_with("ReceiveMessage")
        && let Ok(mut m) = p.counts.0.lock()
    {
        // Which request: an update's expression tells the item it writes.
        let what = serde_json::from_slice::<Value>(&bytes).ok().and_then(|b| {
            b["UpdateExpression"].as_str().map(|e| {
                let e: String = e.chars().take(40).collect();
                format!(" ({e}…)")
            })
        });
        *m.entry(format!("{SLOW_PREFIX}{target}{}", what.unwrap_or_default())).or_default() += 1;
    }
    match answer {
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

/// Requests per unit of work since `before`, in total and by operation (the write-unit
/// estimate left out).
pub fn per(counts: &HashMap<String, u64>, before: &HashMap<String, u64>, prefix: &str, n: usize) -> (f64, String) {
    let mut parts: Vec<(String, u64)> = counts
        .iter()
        .filter(|(k, _)| k.starts_with(prefix) && k.as_str() != WRITE_UNITS)
        .map(|(k, v)| (k.trim_start_matches(prefix).to_string(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect();
    parts.sort_by_key(|p| std::cmp::Reverse(p.1));
    let total: u64 = parts.iter().map(|(_, v)| v).sum();
    let detail: Vec<String> = parts.iter().map(|(k, v)| format!("{k} {:.2}", *v as f64 / n as f64)).collect();
    (total as f64 / n as f64, detail.join(", "))
}

/// Starts the counting proxy in front of the emulators; returns its address.
pub async fn counting_proxy(upstreams: Upstreams) -> std::io::Result<(SocketAddr, Counts)> {
    let counts = Counts::default();
    let http = reqwest::Client::builder().pool_max_idle_per_host(256).build().unwrap_or_default();
    let proxy = Arc::new(Proxy { upstreams, http, counts: counts.clone() });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(axum::serve(listener, axum::Router::new().fallback(forward).with_state(proxy)).into_future());
    Ok((addr, counts))
}

/// The most of `times` (milliseconds, in any order) within any one second: what a pace of
/// "at most rate + 1 in any second" is checked against.
pub fn busiest_second(times: &[u64]) -> usize {
    let mut times = times.to_vec();
    times.sort_unstable();
    let mut busiest = 0;
    let mut end = 0;
    for (start, t) in times.iter().enumerate() {
        while end < times.len() && times[end] < t + 1000 {
            end += 1;
        }
        busiest = busiest.max(end - start);
    }
    busiest
}

/// Estimated DynamoDB write units per unit of work since `before`.
pub fn write_units_per(counts: &HashMap<String, u64>, before: &HashMap<String, u64>, n: usize) -> f64 {
    let units = counts.get(WRITE_UNITS).copied().unwrap_or(0) - before.get(WRITE_UNITS).copied().unwrap_or(0);
    units as f64 / 1000.0 / n.max(1) as f64
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::write_units;

    #[test]
    fn the_busiest_second_counts_any_window_of_a_second() {
        assert_eq!(super::busiest_second(&[]), 0);
        // 0..900 ms: ten in one second; 1000 starts the next one.
        let times: Vec<u64> = (0..=10).map(|i| i * 100).collect();
        assert_eq!(super::busiest_second(&times), 10);
        assert_eq!(super::busiest_second(&[2500, 1500, 1600, 2499, 10]), 3);
    }

    #[test]
    fn write_units_follow_on_demand_billing() {
        let claim = json!({"UpdateExpression": "SET #status = :s, GSI2PK = :g, claim_id = :j"});
        let record = json!({"UpdateExpression": "SET #status = :s, GSI2PK = :g, GSI3PK = :w REMOVE claim_id"});
        let tx = json!({"TransactItems": [{"Update": claim}, {"Update": record},
                                          {"ConditionCheck": {"Key": {}}}]});
        // 2 + 2 (index moved), 2 + 2 + 2 (two index keys set), condition check free.
        assert_eq!(write_units("DynamoDB_20120810.TransactWriteItems", &tx), 10.0);
        // The outcome of a send: the pending entry removed, a message id's entry added (new).
        let sent = json!({"UpdateExpression": "SET wamid = :wamid, GSI3PK = :gsi3pk, GSI3SK = :gsi3sk REMOVE GSI2PK, GSI2SK",
                          "ExpressionAttributeValues": {":wamid": {"S": "wamid.1"}, ":gsi3pk": {"S": "WAMID#wamid.1"}}});
        assert_eq!(write_units("DynamoDB_20120810.UpdateItem", &sent), 3.0);
        let counter = json!({"UpdateExpression": "ADD sent_count :a"});
        assert_eq!(write_units("DynamoDB_20120810.UpdateItem", &counter), 1.0);
        let batch = json!({"RequestItems": {"t": [{"PutRequest": {"Item": {"GSI2PK": {"S": "x"}}}},
                                                   {"DeleteRequest": {"Key": {}}}]}});
        assert_eq!(write_units("DynamoDB_20120810.BatchWriteItem", &batch), 3.0);
        assert_eq!(write_units("DynamoDB_20120810.GetItem", &json!({})), 0.0);
        // Outcomes as PartiQL: 1 each, plus the index entries (the message id's at parameter 2).
        let statements = json!({"Statements": [
            {"Statement": "UPDATE \"t\" SET \"status\" = ? SET \"GSI3PK\" = ? REMOVE \"GSI2PK\" WHERE \"PK\" = ? AND \"SK\" = ?",
             "Parameters": [{"S": "sent"}, {"S": "WAMID#wamid.1"}, {"S": "p"}, {"S": "s"}]},
            {"Statement": "UPDATE \"t\" SET \"status\" = ? SET \"GSI2PK\" = ? WHERE \"PK\" = ? AND \"SK\" = ?",
             "Parameters": [{"S": "failed"}, {"S": "CAMPAIGN#c#failed#1"}, {"S": "p"}, {"S": "s"}]},
            {"Statement": "UPDATE \"t\" SET \"status\" = ? WHERE \"PK\" = ? AND \"SK\" = ? AND (\"GSI2PK\" = ?)",
             "Parameters": [{"S": "read"}, {"S": "p"}, {"S": "s"}, {"S": "x"}]}]});
        assert_eq!(write_units("DynamoDB_20120810.BatchExecuteStatement", &statements), 3.0 + 3.0 + 1.0);
    }
}

/// A campaign's counters recounted from its recipients' items (read straight from the table:
/// the listing's totals for sent, delivered and read come from the counters themselves).
/// `sent` counts every message WhatsApp accepted (a failure reported later keeps its wamid),
/// `delivered` counts read ones too.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recount {
    pub sent: u64,
    pub delivered: u64,
    pub read: u64,
    pub failed: u64,
    /// The message ids and statuses of up to ten accepted messages not read.
    pub unread: Vec<(String, String)>,
}

impl Recount {
    /// Whether the campaign's answer (`GET /api/campaigns/{id}`) shows these counts; if not, what differs.
    pub fn check(&self, campaign: &Value) -> Result<(), String> {
        let shown = |k: &str| campaign[k].as_u64().unwrap_or(u64::MAX);
        let pairs = [
            ("sent_count", self.sent),
            ("delivered_count", self.delivered),
            ("read_count", self.read),
            ("failed_count", self.failed),
        ];
        let differ: Vec<String> = pairs
            .iter()
            .filter(|(k, v)| shown(k) != *v)
            .map(|(k, v)| format!("{k} {} (recounted {v})", shown(k)))
            .collect();
        if differ.is_empty() { Ok(()) } else { Err(differ.join(", ")) }
    }
}

pub async fn recount(db: &shared::adapters::store::Db, campaign: &str) -> Result<Recount, crate::BoxError> {
    use aws_sdk_dynamodb::types::AttributeValue;
    use shared::adapters::store::keys;
    let mut r = Recount::default();
    // Every partition a campaign's recipients may be in: its shards, and its own (campaigns
    // created before sharding).
    let mut partitions: Vec<String> = keys::recipient_shards(shared::domain::recipient::RECIPIENT_SHARDS)
        .into_iter()
        .map(|shard| keys::recipient_pk(campaign, shard))
        .collect();
    partitions.push(keys::campaign_pk(campaign));
    for pk in partitions {
        let mut start = None;
        loop {
            let page = db
                .client()
                .query()
                .table_name(db.table())
                .key_condition_expression("PK = :pk AND begins_with(SK, :r)")
                .expression_attribute_values(":pk", AttributeValue::S(pk.clone()))
                .expression_attribute_values(":r", AttributeValue::S("R#".into()))
                .projection_expression("#s, wamid")
                .expression_attribute_names("#s", "status")
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| format!("recounting {campaign}: {}", aws_sdk_dynamodb::error::DisplayErrorContext(e)))?;
            for item in page.items() {
                let accepted = item.contains_key("wamid");
                let status = item.get("status").and_then(|v| v.as_s().ok()).map(String::as_str);
                if let Some(wamid) = item.get("wamid").and_then(|v| v.as_s().ok())
                    && status != Some("read")
                    && r.unread.len() < 10
                {
                    r.unread.push((wamid.clone(), status.unwrap_or("?").to_string()));
                }
                match status {
                    Some("read") => {
                        r.read += 1;
                        r.delivered += 1;
                    }
                    Some("delivered") => r.delivered += 1,
                    Some("failed") => r.failed += 1,
                    _ => {}
                }
                r.sent += accepted as u64;
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
    }
    Ok(r)
}
