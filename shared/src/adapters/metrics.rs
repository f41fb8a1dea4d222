//! CloudWatch metrics in the Embedded Metric Format (EMF): a JSON log line whose `_aws` object
//! tells CloudWatch Logs which of its keys are metrics and which are dimensions, so that a
//! function's stdout becomes metrics with no API call and no extra latency.
//!
//! The sender, the dispatcher and the status applier record into [`Metrics`] as they work; the
//! queue consumer calls [`Metrics::flush`] once per batch, which prints one line per set of
//! dimension values (an account, an account and an error class, a queue), not one per message.
//! Counts are summed; timings are kept as lists of values (EMF takes up to 100 per metric and
//! line; more go on further lines), from which CloudWatch computes percentiles.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use serde_json::{Map, Value, json};

use crate::adapters::whatsapp::SendOutcome;
use crate::domain::sending::{ErrorClass, classify};

/// Every metric emitted (the dashboard in template.yaml graphs each).
pub const METRIC_NAMES: &[&str] = &[
    "MessagesSent",
    "MessagesFailed",
    "PaceLagMs",
    "RecipientsQueued",
    "StatusesApplied",
    "StatusesWaiting",
    "StatusesUnknown",
    "QueueAgeMs",
];

/// The most values EMF takes for one metric in one line.
const MAX_VALUES: usize = 100;

/// Dimension sets a record is aggregated by. Each record names its dimensions' values once;
/// these say which combinations CloudWatch keeps (`[]`: over all values).
type DimensionSets = &'static [&'static [&'static str]];

/// Per account, and over all accounts.
const BY_ACCOUNT: DimensionSets = &[&["AccountId"], &[]];
/// Per account and error class, and per error class over all accounts.
const BY_ERROR_CLASS: DimensionSets = &[&["AccountId", "ErrorClass"], &["ErrorClass"]];
/// Per queue consumer.
const BY_QUEUE: DimensionSets = &[&["Queue"]];
/// Over the whole service.
const SERVICE: DimensionSets = &[&[]];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Values {
    /// A count: one value per line, the sum.
    Sum(f64),
    /// A timing: every value, for percentiles.
    Each(Vec<f64>),
}

/// What a batch recorded: by dimension sets and dimension values, each metric's unit and values.
type Key = (DimensionSets, Vec<(&'static str, String)>);
type Recorded = BTreeMap<Key, BTreeMap<&'static str, (Unit, Values)>>;

/// The lines a test collects instead of stdout ([`Metrics::collect`]).
#[derive(Debug, Clone, Default)]
pub struct Collected(Arc<Mutex<Vec<Value>>>);

impl Collected {
    /// Every line emitted so far.
    pub fn lines(&self) -> Vec<Value> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The sum of `metric` over the lines whose dimensions have these values and no others.
    pub fn sum(&self, metric: &str, dimensions: &[(&str, &str)]) -> f64 {
        self.lines()
            .iter()
            .filter(|line| {
                dimensions_of(line)
                    == dimensions.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>()
            })
            .map(|line| match &line[metric] {
                Value::Array(values) => values.iter().filter_map(Value::as_f64).sum(),
                v => v.as_f64().unwrap_or(0.0),
            })
            .sum()
    }

    /// Every value of `metric` (a timing) in the lines.
    pub fn values(&self, metric: &str) -> Vec<f64> {
        let lines = self.lines();
        lines.iter().filter_map(|l| l[metric].as_array()).flatten().filter_map(Value::as_f64).collect()
    }
}

/// The dimension names and values of a line: those its first dimension set names.
fn dimensions_of(line: &Value) -> Vec<(String, String)> {
    let names = &line["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0];
    let names = names.as_array().map(Vec::as_slice).unwrap_or_default();
    names
        .iter()
        .filter_map(Value::as_str)
        .map(|n| (n.to_string(), line[n].as_str().unwrap_or_default().to_string()))
        .collect()
}

/// The metrics of a process: what was recorded since the last flush.
#[derive(Debug)]
pub struct Metrics {
    namespace: String,
    enabled: bool,
    recorded: Mutex<Recorded>,
    collected: OnceLock<Collected>,
}

impl Metrics {
    /// Metrics under `namespace`, printed to stdout when `enabled` (in Lambda).
    pub fn new(namespace: &str, enabled: bool) -> Self {
        Metrics { namespace: namespace.to_string(), enabled, recorded: Default::default(), collected: OnceLock::new() }
    }

    /// From now on, lines go to the answer instead of stdout, whether or not metrics are
    /// enabled (tests read what a run emitted). Every call answers the same collection.
    pub fn collect(&self) -> Collected {
        self.collected.get_or_init(Collected::default).clone()
    }

    fn on(&self) -> bool {
        self.enabled || self.collected.get().is_some()
    }

    fn record(
        &self,
        sets: DimensionSets,
        dimensions: &[(&'static str, &str)],
        metric: &'static str,
        unit: Unit,
        value: Values,
    ) {
        if !self.on() {
            return;
        }
        let key = (sets, dimensions.iter().map(|(k, v)| (*k, v.to_string())).collect());
        let mut recorded = self.recorded.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = recorded.entry(key).or_default().entry(metric).or_insert((unit, value.empty()));
        entry.1.add(value);
    }

    /// A POST to WhatsApp for `account`: sent, or failed with its error class; and how long
    /// after its reserved slot it left (`lag_ms`).
    pub fn message(&self, account: &str, outcome: &SendOutcome, lag_ms: f64) {
        let by_account = [("AccountId", account)];
        let class = match outcome {
            SendOutcome::Accepted { .. } => None,
            SendOutcome::Rejected { code, .. } => Some(class_name(classify(*code))),
            SendOutcome::Unreachable { .. } => Some(class_name(ErrorClass::Transient)),
            SendOutcome::Unknown { .. } => Some("unknown"),
        };
        let name = if class.is_some() { "MessagesFailed" } else { "MessagesSent" };
        self.record(BY_ACCOUNT, &by_account, name, Unit::Count, Values::Sum(1.0));
        if let Some(class) = class {
            let by_class = [("AccountId", account), ("ErrorClass", class)];
            self.record(BY_ERROR_CLASS, &by_class, "MessagesFailed", Unit::Count, Values::Sum(1.0));
        }
        let lag = (lag_ms.max(0.0) * 10.0).round() / 10.0;
        self.record(BY_ACCOUNT, &by_account, "PaceLagMs", Unit::Milliseconds, Values::Each(vec![lag]));
    }

    /// Recipients a dispatch step of a campaign of `account` queued for sending.
    pub fn recipients_queued(&self, account: &str, count: usize) {
        let by_account = [("AccountId", account)];
        self.record(BY_ACCOUNT, &by_account, "RecipientsQueued", Unit::Count, Values::Sum(count as f64));
    }

    /// What a status batch did: statuses applied to their recipients, waiting for their send
    /// to be recorded, of messages not known.
    pub fn statuses(&self, applied: usize, waiting: usize, unknown: usize) {
        for (name, n) in [("StatusesApplied", applied), ("StatusesWaiting", waiting), ("StatusesUnknown", unknown)] {
            self.record(SERVICE, &[], name, Unit::Count, Values::Sum(n as f64));
        }
    }

    /// How long the messages of a batch of `queue` waited in it (from when SQS took them,
    /// unix milliseconds, to now).
    pub fn queue_age(&self, queue: &str, sent_at_ms: impl IntoIterator<Item = i64>) {
        let now = chrono::Utc::now().timestamp_millis();
        let ages: Vec<f64> = sent_at_ms.into_iter().map(|at| (now - at).max(0) as f64).collect();
        if !ages.is_empty() {
            self.record(BY_QUEUE, &[("Queue", queue)], "QueueAgeMs", Unit::Milliseconds, Values::Each(ages));
        }
    }

    /// Emits what was recorded since the last flush, one line per set of dimension values (more
    /// when a timing has more than 100 values), and starts again.
    pub fn flush(&self) {
        let recorded = std::mem::take(&mut *self.recorded.lock().unwrap_or_else(PoisonError::into_inner));
        if recorded.is_empty() {
            return;
        }
        let lines = render(&self.namespace, chrono::Utc::now().timestamp_millis(), &recorded);
        if let Some(collected) = self.collected.get() {
            collected.0.lock().unwrap_or_else(PoisonError::into_inner).extend(lines);
            return;
        }
        let mut out = std::io::stdout().lock();
        for line in lines {
            // A lost metric line is not worth failing a batch for.
            let _ = writeln!(out, "{line}");
        }
    }
}

impl Values {
    fn empty(&self) -> Values {
        match self {
            Values::Sum(_) => Values::Sum(0.0),
            Values::Each(_) => Values::Each(Vec::new()),
        }
    }

    fn add(&mut self, more: Values) {
        match (self, more) {
            (Values::Sum(a), Values::Sum(b)) => *a += b,
            (Values::Each(a), Values::Each(b)) => a.extend(b),
            // A metric is always recorded the same way; a mix keeps the first.
            _ => {}
        }
    }
}

/// The metrics' name of an error class (as the dimension `ErrorClass`).
fn class_name(class: ErrorClass) -> &'static str {
    match class {
        ErrorClass::Throughput => "throughput",
        ErrorClass::PairRate => "pair_rate",
        ErrorClass::Transient => "transient",
        ErrorClass::Permanent => "permanent",
        ErrorClass::Campaign => "campaign",
        ErrorClass::Account => "account",
    }
}

/// The EMF lines of what was recorded, at `timestamp_ms`.
fn render(namespace: &str, timestamp_ms: i64, recorded: &Recorded) -> Vec<Value> {
    let mut lines = Vec::new();
    for ((sets, dimensions), metrics) in recorded {
        // The n-th line carries the n-th hundred values of each timing; counts go on the first.
        for part in 0.. {
            let mut values = Map::new();
            let mut declared = Vec::new();
            for (name, (unit, v)) in metrics {
                let value = match v {
                    Values::Sum(sum) if part == 0 => number(*sum),
                    Values::Each(each) if each.len() > part * MAX_VALUES => {
                        let chunk = &each[part * MAX_VALUES..each.len().min((part + 1) * MAX_VALUES)];
                        Value::Array(chunk.iter().map(|v| number(*v)).collect())
                    }
                    _ => continue,
                };
                declared.push(json!({"Name": name, "Unit": unit.name()}));
                values.insert(name.to_string(), value);
            }
            if declared.is_empty() {
                break;
            }
            let directive = json!({"Namespace": namespace, "Dimensions": sets, "Metrics": declared});
            let mut line = Map::new();
            line.insert("_aws".into(), json!({"Timestamp": timestamp_ms, "CloudWatchMetrics": [directive]}));
            for (k, v) in dimensions {
                line.insert(k.to_string(), json!(v));
            }
            line.extend(values);
            lines.push(Value::Object(line));
        }
    }
    lines
}

/// A whole number as an integer (`3`, not `3.0`).
fn number(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 9e15 { json!(v as i64) } else { json!(v) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepted() -> SendOutcome {
        SendOutcome::Accepted { wamid: "wamid.1".into() }
    }

    #[test]
    fn a_batch_of_sends_is_one_line_per_account_and_one_per_account_and_error_class() {
        // Collected even where metrics are off (tests).
        let m = Metrics::new("WhatsAppCampaigns", false);
        let collected = m.collect();
        m.message("acc-1", &accepted(), 1.26);
        m.message("acc-1", &accepted(), 0.0);
        m.message("acc-1", &SendOutcome::Rejected { code: 131026, message: "undeliverable".into() }, 2.0);
        m.message("acc-2", &SendOutcome::Unknown { message: "reset".into() }, -3.0);
        m.flush();
        let lines = collected.lines();
        let at = lines[0]["_aws"]["Timestamp"].clone();
        assert!(at.as_i64().is_some_and(|t| t > 1_700_000_000_000), "{at}");
        let directive = |dims: Value, metrics: Value| json!({"Timestamp": at, "CloudWatchMetrics": [{"Namespace": "WhatsAppCampaigns", "Dimensions": dims, "Metrics": metrics}]});
        let by_account = json!([["AccountId"], []]);
        let by_class = json!([["AccountId", "ErrorClass"], ["ErrorClass"]]);
        let counts_and_lag = json!([
            {"Name": "MessagesFailed", "Unit": "Count"},
            {"Name": "MessagesSent", "Unit": "Count"},
            {"Name": "PaceLagMs", "Unit": "Milliseconds"}
        ]);
        let failed = json!([{"Name": "MessagesFailed", "Unit": "Count"}]);
        let failed_and_lag =
            json!([{"Name": "MessagesFailed", "Unit": "Count"}, {"Name": "PaceLagMs", "Unit": "Milliseconds"}]);
        let expected = vec![
            json!({"_aws": directive(by_account.clone(), counts_and_lag), "AccountId": "acc-1",
                   "MessagesFailed": 1, "MessagesSent": 2, "PaceLagMs": [1.3, 0, 2]}),
            json!({"_aws": directive(by_account, failed_and_lag), "AccountId": "acc-2",
                   "MessagesFailed": 1, "PaceLagMs": [0]}),
            json!({"_aws": directive(by_class.clone(), failed.clone()), "AccountId": "acc-1",
                   "ErrorClass": "permanent", "MessagesFailed": 1}),
            json!({"_aws": directive(by_class, failed), "AccountId": "acc-2",
                   "ErrorClass": "unknown", "MessagesFailed": 1}),
        ];
        assert_eq!(lines, expected);
        // The key order CloudWatch reads does not matter, but one line is one JSON object.
        assert!(lines.iter().all(|l| !l.to_string().contains('\n')));
    }

    #[test]
    fn every_error_class_is_a_dimension_value_of_its_own() {
        let m = Metrics::new("N", true);
        for (code, class) in [
            (130429, "throughput"),
            (131056, "pair_rate"),
            (131000, "transient"),
            (131026, "permanent"),
            (132001, "campaign"),
            (190, "account"),
        ] {
            m.message("a", &SendOutcome::Rejected { code, message: String::new() }, 0.0);
            m.message("a", &SendOutcome::Rejected { code, message: String::new() }, 0.0);
            let collected = m.collect();
            m.flush();
            assert_eq!(collected.sum("MessagesFailed", &[("AccountId", "a"), ("ErrorClass", class)]), 2.0, "{code}");
        }
        m.message("a", &SendOutcome::Unreachable { message: String::new() }, 0.0);
        let collected = m.collect();
        m.flush();
        assert_eq!(collected.sum("MessagesFailed", &[("AccountId", "a"), ("ErrorClass", "transient")]), 3.0);
        assert_eq!(collected.sum("MessagesFailed", &[("AccountId", "a")]), 13.0);
    }

    #[test]
    fn statuses_and_queued_recipients_are_summed_and_a_flush_starts_again() {
        let m = Metrics::new("N", true);
        let collected = m.collect();
        m.statuses(7, 1, 2);
        m.statuses(3, 0, 0);
        m.recipients_queued("a", 10);
        m.recipients_queued("a", 5);
        m.flush();
        let lines = collected.lines();
        assert_eq!(lines.len(), 2, "{lines:?}");
        let (service, account) = (&lines[0], &lines[1]);
        assert_eq!((account["AccountId"].as_str(), account["RecipientsQueued"].as_i64()), (Some("a"), Some(15)));
        assert_eq!(service["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([[]]));
        assert_eq!((service["StatusesApplied"].as_i64(), service["StatusesWaiting"].as_i64()), (Some(10), Some(1)));
        assert_eq!(service["StatusesUnknown"], 2);
        m.flush();
        assert_eq!(collected.lines().len(), 2, "nothing new recorded, nothing emitted");
    }

    #[test]
    fn more_than_a_hundred_values_go_on_further_lines_and_counts_only_on_the_first() {
        let m = Metrics::new("N", true);
        let collected = m.collect();
        for i in 0..250 {
            m.message("a", &accepted(), i as f64);
        }
        // The send times are read before the metric reads its clock (a lazy iterator would read
        // them after it, a millisecond short now and then).
        let sent: Vec<i64> = (0..3).map(|_| chrono::Utc::now().timestamp_millis() - 1000).collect();
        m.queue_age("send", sent);
        m.flush();
        let lines = collected.lines();
        let lags: Vec<usize> = lines.iter().filter_map(|l| l["PaceLagMs"].as_array().map(Vec::len)).collect();
        assert_eq!(lags, vec![100, 100, 50]);
        assert_eq!(lines.iter().filter(|l| l.get("MessagesSent").is_some()).count(), 1);
        assert_eq!(collected.sum("MessagesSent", &[("AccountId", "a")]), 250.0);
        // A line declares only the metrics it carries.
        let last = &lines[2]["_aws"]["CloudWatchMetrics"][0]["Metrics"];
        assert_eq!(last, &json!([{"Name": "PaceLagMs", "Unit": "Milliseconds"}]));
        let ages = collected.values("QueueAgeMs");
        assert!(ages.len() == 3 && ages.iter().all(|a| (1000.0..5000.0).contains(a)), "{ages:?}");
        let queue = lines.iter().find(|l| l.get("QueueAgeMs").is_some()).unwrap();
        assert_eq!(
            (queue["Queue"].as_str(), &queue["_aws"]["CloudWatchMetrics"][0]["Dimensions"]),
            (Some("send"), &json!([["Queue"]]))
        );
    }

    #[test]
    fn disabled_metrics_record_nothing() {
        let m = Metrics::new("N", false);
        m.message("a", &accepted(), 1.0);
        assert!(m.recorded.lock().unwrap().is_empty());
    }
}
