//! A test's own copy of the stack: a fresh table and queues in the emulator (so tests run in
//! parallel without seeing each other), and requests through the local server's API-key check,
//! the real dispatcher and SDK.

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

use local::fake_whatsapp::{self, FakeState};
use local::workers::Workers;
use shared::adapters::store::keys;
use shared::app::App;
use shared::config::Config;
use shared::domain::api_key::NewApiKey;
use shared::domain::id::Id;
use shared::domain::phone::Phone;
use shared::domain::recipient::{RECIPIENT_SHARDS, shard_of};
use shared::domain::sending::SendJob;
use shared::usecases::send::Incoming;
use shared::usecases::statuses::Applied;

/// The webhook secrets of the test stacks.
pub const APP_SECRET: &str = "test-app-secret";
pub const VERIFY_TOKEN: &str = "test-verify-token";

/// Requests to the fake WhatsApp API give up after this many seconds.
pub const WHATSAPP_TIMEOUT_SECONDS: u64 = 3;

/// Claims older than this are treated as left behind by a vanished sender (the shortest the
/// configuration allows with that timeout).
pub const STALE_CLAIM_SECONDS: i64 = WHATSAPP_TIMEOUT_SECONDS as i64 + 5;

/// A sending campaign that has not moved for this long is checked for lost work.
pub const STALL_SECONDS: i64 = 10;

/// `count` distinct valid US numbers starting at +1415555<first>.
pub fn phones(first: u32, count: u32) -> Vec<String> {
    (first..first + count).map(|i| format!("+1415555{i:04}")).collect()
}

/// A send job of these numbers as the sender receives it from the queue.
pub fn job(campaign: &str, phones: &[String]) -> Incoming {
    let phones = phones.iter().map(|p| Phone::e164(p).expect("an E.164 number")).collect();
    let job = SendJob::new(&Id::parse(campaign).expect("a campaign id"), None, phones, 0);
    Incoming { id: job.job_id.to_string(), body: serde_json::to_string(&job).unwrap(), ..Default::default() }
}

pub struct TestStack {
    pub app: Arc<App>,
    pub sqs: aws_sdk_sqs::Client,
    /// Logical id (as in `template.yaml`) → URL of the stack's queues.
    pub queues: HashMap<String, String>,
    /// The fake WhatsApp API the senders talk to.
    pub fake: FakeState,
    /// The queue that receives a copy of every campaign event.
    pub event_tap_url: String,
    /// The API key every request of the helpers carries (made when the stack starts).
    pub api_key: String,
    /// The reader of the table's stream, which counts sends' outcomes and statuses.
    pub tally: local::stream::Tally,
    _exclusive: Option<tokio::sync::MutexGuard<'static, ()>>,
}

/// Tests that send measure pace and timing against one emulator: they run one at a time
/// (the API tests beside them are short).
static SENDING: std::sync::LazyLock<tokio::sync::Mutex<()>> = std::sync::LazyLock::new(|| tokio::sync::Mutex::new(()));

pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

impl Answer {
    pub fn data(&self) -> &Value {
        &self.body["data"]
    }
    pub fn message(&self) -> &str {
        self.body["message"].as_str().unwrap_or_default()
    }
    /// Asserts an error answer: status, the spec's envelope, and words the message must hold.
    #[track_caller]
    pub fn assert_error(&self, status: u16, words: &str) {
        assert_eq!(self.status.as_u16(), status, "{}", self.body);
        assert_eq!(self.body["status"], "error", "{}", self.body);
        assert!(self.body["data"].is_null(), "{}", self.body);
        assert!(self.message().contains(words), "message {:?} should contain {words:?}", self.message());
    }
    #[track_caller]
    pub fn assert_ok(&self, status: u16) -> &Value {
        assert_eq!(self.status.as_u16(), status, "{}", self.body);
        assert_eq!(self.body["status"], "success", "{}", self.body);
        self.data()
    }
}

impl TestStack {
    /// The API on its own table and queues, senders pointed at a fake WhatsApp API; no
    /// queue workers (see [`TestStack::with_workers`]).
    pub async fn new() -> Self {
        Self::configured(|_| {}).await
    }

    /// [`TestStack::new`] with a configuration change.
    pub async fn configured(change: impl FnOnce(&mut Config)) -> Self {
        Self::built(None, change).await
    }

    /// A stack whose AWS requests go to `endpoint` (a proxy in front of the emulator).
    async fn built(endpoint: Option<&str>, change: impl FnOnce(&mut Config)) -> Self {
        assert!(
            std::env::var("AWS_ENDPOINT_URL").is_ok(),
            "these tests need the emulator: run scripts/test.sh (it starts moto_server and sets AWS_ENDPOINT_URL)"
        );
        // Logs as the stack writes them, with RUST_LOG (none by default).
        if std::env::var("RUST_LOG").is_ok() {
            shared::config::init_tracing();
        }
        let fake = FakeState::new();
        let addr = fake_whatsapp::spawn(fake.clone()).await.expect("the fake WhatsApp API should start");
        let mut config = Config {
            table_name: format!("t-{}", uuid::Uuid::new_v4().simple()),
            default_region: "US".into(),
            whatsapp_api_url: format!("http://{addr}"),
            stale_claim_seconds: STALE_CLAIM_SECONDS,
            whatsapp_timeout_seconds: WHATSAPP_TIMEOUT_SECONDS,
            unknown_status_retry_seconds: 1,
            stall_seconds: STALL_SECONDS,
            webhook_secret_arn: None,
            whatsapp_app_secret: Some(APP_SECRET.into()),
            whatsapp_verify_token: Some(VERIFY_TOKEN.into()),
            ..Config::from_env()
        };
        change(&mut config);
        let sdk = match endpoint {
            Some(endpoint) => shared::adapters::aws::sdk_config_at(endpoint),
            None => shared::adapters::aws::sdk_config(),
        };
        let stack =
            local::Stack::start_with(&sdk, config).await.expect("the emulator should take the table and queues");
        stack.tally.without_window();
        let issued = shared::usecases::keys::issue(&stack.app.db, NewApiKey { name: "tests".into() }).await.unwrap();
        TestStack {
            app: stack.app,
            sqs: stack.sqs,
            queues: stack.queues,
            fake,
            event_tap_url: stack.event_tap_url,
            tally: stack.tally,
            api_key: issued.secret.expose().to_string(),
            _exclusive: None,
        }
    }

    /// A stack for a sending test, running alone among the sending tests, with the
    /// dispatcher and `senders` sender workers polling its queues as the local stack does
    /// (none when 0; they stop with the test's runtime).
    pub async fn sending(senders: usize) -> Self {
        Self::sending_with(senders, |_| {}).await
    }

    pub async fn sending_with(senders: usize, change: impl FnOnce(&mut Config)) -> Self {
        Self::sending_via(None, senders, change).await
    }

    /// [`TestStack::sending_with`], with the AWS requests going to `endpoint` when given.
    pub async fn sending_via(endpoint: Option<&str>, senders: usize, change: impl FnOnce(&mut Config)) -> Self {
        let guard = SENDING.lock().await;
        let mut t = Self::built(endpoint, change).await;
        t._exclusive = Some(guard);
        t.spawn_workers(senders);
        t
    }

    /// How many send requests the fake received per number (`+` and its digits).
    pub fn hits(&self) -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for r in self.fake.requests() {
            *m.entry(format!("+{}", r.to.unwrap_or_default().trim_start_matches('+'))).or_default() += 1;
        }
        m
    }

    /// Serves the stack's API on a local port and has the fake post its signed status
    /// webhooks there, each status `sent`, `delivered` (and `read`, when given) milliseconds
    /// after its send; `change` adjusts the fake further.
    pub async fn post_statuses(
        &self,
        delays: (u64, u64, Option<u64>),
        change: impl FnOnce(&mut fake_whatsapp::FakeConfig),
    ) {
        let api = local::server::spawn(self.app.clone()).await.unwrap();
        let mut config = self.fake.config();
        config.webhook_url = Some(format!("http://{api}/webhooks/whatsapp"));
        config.app_secret = Some(APP_SECRET.into());
        (config.sent_delay_ms, config.delivered_delay_ms, config.read_delay_ms) = delays;
        change(&mut config);
        self.fake.set_config(config);
    }

    /// Starts the dispatcher and `senders` sender workers on this runtime (none when 0).
    pub fn spawn_workers(&self, senders: usize) -> Vec<tokio::task::JoinHandle<()>> {
        if senders == 0 {
            return Vec::new();
        }
        let workers = Workers {
            senders,
            sender_timeout: Duration::from_secs(60),
            reconcile_every: Some(Duration::from_secs(1)),
            status_appliers: 1,
            import_timeout: Duration::from_secs(60),
        };
        workers.spawn(self.app.clone(), self.sqs.clone())
    }

    /// Fires the stack's due schedules from now on, as the local stack does (checked every
    /// 200 ms here, failed starts retried after 1 s).
    pub fn fire_schedules(&self) {
        let firing =
            local::schedules::Firing { every: Duration::from_millis(200), retry_after: vec![Duration::from_secs(1)] };
        firing.spawn(self.app.clone(), self.sqs.clone(), self.queues.get("ScheduleDeadLetterQueue").cloned());
    }

    /// The campaign's schedule as EventBridge Scheduler (the emulator) holds it.
    pub async fn schedule(
        &self,
        campaign: &str,
    ) -> Option<aws_sdk_scheduler::operation::get_schedule::GetScheduleOutput> {
        let s = &self.app.scheduler;
        let name = shared::domain::schedule::schedule_name(campaign);
        match s.client().get_schedule().group_name(s.group()).name(name).send().await {
            Ok(out) => Some(out),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => None,
            Err(e) => panic!("get_schedule: {}", aws_sdk_scheduler::error::DisplayErrorContext(e)),
        }
    }

    /// The messages waiting in one of the stack's queues (by logical id).
    pub async fn queued(&self, queue: &str) -> usize {
        let (visible, in_flight, delayed) = self.queue_counts(queue).await;
        visible + in_flight + delayed
    }

    /// The messages of a queue: visible, in flight (received, not deleted), delayed.
    pub async fn queue_counts(&self, queue: &str) -> (usize, usize, usize) {
        use aws_sdk_sqs::types::QueueAttributeName::{
            ApproximateNumberOfMessages, ApproximateNumberOfMessagesDelayed, ApproximateNumberOfMessagesNotVisible,
        };
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.queues[queue])
            .attribute_names(ApproximateNumberOfMessages)
            .attribute_names(ApproximateNumberOfMessagesNotVisible)
            .attribute_names(ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .unwrap();
        let attrs = out.attributes.unwrap_or_default();
        let get = |k| attrs.get(&k).and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
        (
            get(ApproximateNumberOfMessages),
            get(ApproximateNumberOfMessagesNotVisible),
            get(ApproximateNumberOfMessagesDelayed),
        )
    }

    /// The campaign's recipients not processed yet (the first 20), as the store holds them: what
    /// a campaign that does not finish is waiting for.
    async fn open(&self, campaign: &str) -> String {
        use shared::domain::recipient::RecipientStatus;
        let c = match self.app.db.get_campaign(campaign).await {
            Ok(Some(c)) => c,
            Ok(None) => return "(the campaign is gone)".into(),
            Err(e) => return format!("(could not read the campaign: {e})"),
        };
        match self.app.db.recipients_in(&c, RecipientStatus::Pending, 20).await {
            Ok(open) => format!("{open:?}"),
            Err(e) => format!("(could not read them: {e})"),
        }
    }

    /// Polls the campaign until `done` says so; panics with the last state (and what it waits
    /// for) after `timeout`.
    pub async fn wait_for(&self, campaign: &str, timeout: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let start = std::time::Instant::now();
        loop {
            let c = self.get(&format!("/api/campaigns/{campaign}")).await.data().clone();
            if done(&c) {
                return c;
            }
            if start.elapsed() >= timeout {
                panic!(
                    "campaign did not reach the expected state in {timeout:?}: {c}\nnot processed: {}",
                    self.open(campaign).await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A draft campaign on a new account of `tier` with the given numbers imported; returns
    /// (campaign, account). The fake knows the account's token.
    pub async fn campaign_with(&self, tier: &str, phones: &[String]) -> (String, String) {
        let account = self.account(tier).await;
        self.fake.register_account("106540352242922", "EAAG-secret-token");
        let template = self.template(&account, "offer", "APPROVED").await;
        let body = json!({"name": "Sale", "account_id": account, "template_id": template,
                          "variable_mapping": {"1": "name", "2": "discount_code"}});
        let c = self.post("/api/campaigns", body).await.assert_ok(201)["id"].as_str().unwrap().to_string();
        self.add_recipients(&c, phones).await;
        (c, account)
    }

    /// A second campaign on an existing account (same template name is refused, so a new one).
    pub async fn another_campaign(&self, account: &str, phones: &[String]) -> String {
        let template = self.template(account, &format!("offer_{}", uuid::Uuid::new_v4().simple()), "APPROVED").await;
        let body = json!({"name": "Sale 2", "account_id": account, "template_id": template,
                          "variable_mapping": {"1": "name", "2": "discount_code"}});
        let c = self.post("/api/campaigns", body).await.assert_ok(201)["id"].as_str().unwrap().to_string();
        self.add_recipients(&c, phones).await;
        c
    }

    pub async fn add_recipients(&self, campaign: &str, phones: &[String]) {
        if phones.is_empty() {
            return;
        }
        let mut csv = String::from("phone_number,name,discount_code\n");
        for (i, p) in phones.iter().enumerate() {
            csv.push_str(&format!("{p},Name {i},CODE{i}\n"));
        }
        let imported = self.post_csv(&format!("/api/campaigns/{campaign}/recipients/import"), csv).await;
        assert_eq!(imported.assert_ok(200)["imported"].as_u64(), Some(phones.len() as u64), "{}", imported.body);
    }

    /// Every recipient of a campaign (up to 1,000).
    pub async fn recipients(&self, campaign: &str) -> Vec<Value> {
        let mut all = Vec::new();
        for page in 1..=10 {
            let p = self.get(&format!("/api/campaigns/{campaign}/recipients?limit=100&page={page}")).await;
            let items = p.data()["items"].as_array().cloned().unwrap_or_default();
            if items.is_empty() {
                break;
            }
            all.extend(items);
        }
        all
    }

    /// A request with exactly these headers (no API key unless given) through the local
    /// server's key check and the dispatcher; the raw answer. Changes written before it are
    /// counted first (the counters of sends and statuses come from the table's stream, a
    /// moment later).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> http::Response<String> {
        self.tally.settled().await;
        let mut req = http::Request::builder().method(method).uri(path);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        local::server::answer(self.app.clone(), req.body(body).unwrap()).await
    }

    /// [`TestStack::request`] with the stack's API key added; the raw answer.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> http::Response<String> {
        let mut with_key = vec![("x-api-key", self.api_key.as_str())];
        with_key.extend_from_slice(headers);
        self.request(method, path, &with_key, body).await
    }

    pub async fn call(&self, method: Method, path: &str, content_type: Option<&str>, body: impl Into<Bytes>) -> Answer {
        let headers: Vec<(&str, &str)> = content_type.map(|ct| ("content-type", ct)).into_iter().collect();
        answer(self.raw(method, path, &headers, body.into()).await)
    }

    /// Posts a webhook body signed with the stack's app secret, as Meta does (without an API
    /// key: the webhook is public); then applies what it queued, as the status applier does.
    pub async fn webhook(&self, body: &str) -> Answer {
        self.webhook_applied(body).await.0
    }

    /// [`TestStack::webhook`], with what the status applier changed.
    pub async fn webhook_applied(&self, body: &str) -> (Answer, Applied) {
        let answer = self.raw_webhook(body).await;
        let applied = if answer.status == StatusCode::OK { self.apply_statuses().await } else { Applied::default() };
        (answer, applied)
    }

    /// Posts a signed webhook body and leaves what it queued on the queue.
    pub async fn raw_webhook(&self, body: &str) -> Answer {
        let signature = shared::adapters::signature::sign(APP_SECRET.as_bytes(), body.as_bytes());
        let headers = [("content-type", "application/json"), ("x-hub-signature-256", signature.as_str())];
        answer(self.request(Method::POST, "/webhooks/whatsapp", &headers, Bytes::from(body.to_string())).await)
    }

    /// The status-queue messages visible now (taken off the queue).
    pub async fn take_statuses(&self) -> Vec<Incoming> {
        let url = &self.queues["StatusQueue"];
        let mut taken = Vec::new();
        loop {
            let out = self.sqs.receive_message().queue_url(url).max_number_of_messages(10).send().await.unwrap();
            let messages = out.messages.unwrap_or_default();
            if messages.is_empty() {
                return taken;
            }
            for m in messages {
                let handle = m.receipt_handle().unwrap_or_default().to_string();
                self.sqs.delete_message().queue_url(url).receipt_handle(&handle).send().await.unwrap();
                taken.push(Incoming {
                    id: m.message_id.unwrap_or_default(),
                    body: m.body.unwrap_or_default(),
                    ..Default::default()
                });
            }
        }
    }

    /// Applies every status-queue message visible now, as the status applier does (those put
    /// back for later are not visible yet), and waits for those a running applier holds; what
    /// the ones applied here changed.
    pub async fn apply_statuses(&self) -> Applied {
        let mut applied = Applied::default();
        loop {
            let batch = self.take_statuses().await;
            if batch.is_empty() {
                if self.queue_counts("StatusQueue").await.1 == 0 {
                    return applied;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            let (done, failed) = shared::usecases::statuses::apply_batch(&self.app, batch).await;
            assert!(failed.is_empty(), "statuses could not be applied: {failed:?}");
            applied.add(&done);
        }
    }

    /// The campaign events that reached the bus so far (read from the tap queue), as
    /// `(detail-type, detail)`, in the order they were published.
    pub async fn events(&self) -> Vec<(String, Value)> {
        let mut events = Vec::new();
        loop {
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.event_tap_url)
                .max_number_of_messages(10)
                .send()
                .await
                .unwrap();
            let messages = out.messages.unwrap_or_default();
            if messages.is_empty() {
                break;
            }
            for m in messages {
                let e: Value = serde_json::from_str(m.body().unwrap_or_default()).unwrap();
                events.push((e["detail-type"].as_str().unwrap_or_default().to_string(), e["detail"].clone()));
                let handle = m.receipt_handle().unwrap_or_default();
                self.sqs.delete_message().queue_url(&self.event_tap_url).receipt_handle(handle).send().await.unwrap();
            }
        }
        events.sort_by(|a, b| a.1["occurred_at"].as_str().cmp(&b.1["occurred_at"].as_str()));
        events
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, None, Bytes::new()).await
    }
    pub async fn delete(&self, path: &str) -> Answer {
        self.call(Method::DELETE, path, None, Bytes::new()).await
    }
    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.call(Method::POST, path, Some("application/json"), body.to_string()).await
    }
    pub async fn put(&self, path: &str, body: Value) -> Answer {
        self.call(Method::PUT, path, Some("application/json"), body.to_string()).await
    }
    pub async fn post_csv(&self, path: &str, csv: impl Into<Bytes>) -> Answer {
        self.call(Method::POST, path, Some("text/csv"), csv).await
    }

    pub async fn account(&self, tier: &str) -> String {
        let body = json!({"name": "Acme", "phone_number_id": "106540352242922", "business_account_id": "102290129340398",
                          "access_token": "EAAG-secret-token", "messaging_limit_tier": tier});
        self.post("/api/accounts", body).await.assert_ok(201)["id"].as_str().unwrap().to_string()
    }

    /// A template with body placeholders {{1}} and {{2}}.
    pub async fn template(&self, account_id: &str, name: &str, status: &str) -> String {
        let body = json!({"account_id": account_id, "name": name, "language": "en_US", "category": "MARKETING",
                          "status": status, "components": [{"type": "BODY", "text": "Hi {{1}}, use {{2}}"}]});
        self.post("/api/templates", body).await.assert_ok(201)["id"].as_str().unwrap().to_string()
    }

    /// A draft campaign mapping {{1}} → name and {{2}} → discount_code; (campaign, account, template).
    pub async fn campaign(&self) -> (String, String, String) {
        let account = self.account("TIER_1K").await;
        let template = self.template(&account, "offer", "APPROVED").await;
        let body = json!({"name": "Sale", "account_id": account, "template_id": template,
                          "variable_mapping": {"1": "name", "2": "discount_code"}});
        let c = self.post("/api/campaigns", body).await;
        (c.assert_ok(201)["id"].as_str().unwrap().to_string(), account, template)
    }

    /// Reads an item straight from the table.
    pub async fn item(&self, pk: String, sk: &str) -> Option<HashMap<String, AttributeValue>> {
        let db = &self.app.db;
        let req = db.client().get_item().table_name(db.table()).key("PK", s(&pk)).key("SK", s(sk));
        req.send().await.unwrap().item
    }

    /// Counts the items under a partition key straight from the table.
    pub async fn count_items(&self, pk: String, sk_prefix: &str) -> i32 {
        let db = &self.app.db;
        let mut q = db.client().query().table_name(db.table()).expression_attribute_values(":pk", s(&pk));
        q = if sk_prefix.is_empty() {
            q.key_condition_expression("PK = :pk")
        } else {
            q.key_condition_expression("PK = :pk AND begins_with(SK, :p)")
                .expression_attribute_values(":p", s(sk_prefix))
        };
        q.select(aws_sdk_dynamodb::types::Select::Count).send().await.unwrap().count
    }

    /// How many recipient items of a campaign the table holds (over its shards).
    pub async fn count_recipient_items(&self, campaign: &str) -> i32 {
        let mut total = 0;
        for shard in keys::recipient_shards(RECIPIENT_SHARDS) {
            total += self.count_items(keys::recipient_pk(campaign, shard), "R#").await;
        }
        total
    }

    /// Puts a campaign in `status` directly, with the index keys the state machine moves with
    /// it, for states a test reaches faster this way (completed, sending without workers).
    pub async fn set_campaign_status(&self, id: &str, status: &str) {
        let pk = format!("CAMPAIGN#{id}");
        let created = self.item(pk.clone(), "#CAMPAIGN").await.unwrap()["created_at"].as_s().unwrap().clone();
        let values = [
            ("status", s(status)),
            ("GSI2SK", s(&format!("{status}#{created}#{id}"))),
            ("GSI3PK", s(&format!("CAMPAIGNS#{status}"))),
        ];
        self.set(pk, "#CAMPAIGN", &values).await;
    }

    /// Polls `check` until it holds; panics naming `what` after `timeout`.
    pub async fn eventually<F, Fut>(&self, timeout: Duration, what: &str, check: F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let start = std::time::Instant::now();
        while !check().await {
            assert!(start.elapsed() < timeout, "{what}: not after {timeout:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Sets attributes of a recipient's item directly.
    pub async fn set_recipient(&self, campaign: &str, phone: &str, values: &[(&str, AttributeValue)]) {
        self.set(recipient_pk(campaign, phone), &format!("R#{phone}"), values).await
    }

    /// Removes attributes of a stored item directly.
    pub async fn remove(&self, pk: String, sk: &str, names: &[&str]) {
        let db = &self.app.db;
        let list: Vec<String> = (0..names.len()).map(|i| format!("#k{i}")).collect();
        let mut req = db
            .client()
            .update_item()
            .table_name(db.table())
            .key("PK", s(&pk))
            .key("SK", s(sk))
            .update_expression(format!("REMOVE {}", list.join(", ")));
        for (i, name) in names.iter().enumerate() {
            req = req.expression_attribute_names(format!("#k{i}"), *name);
        }
        req.send().await.unwrap();
    }

    /// Sets attributes of a stored item directly, for states this API cannot reach yet
    /// (a campaign sending, a recipient delivered).
    pub async fn set(&self, pk: String, sk: &str, values: &[(&str, AttributeValue)]) {
        let db = &self.app.db;
        let set: Vec<String> = (0..values.len()).map(|i| format!("#k{i} = :v{i}")).collect();
        let mut req = db
            .client()
            .update_item()
            .table_name(db.table())
            .key("PK", s(&pk))
            .key("SK", s(sk))
            .update_expression(format!("SET {}", set.join(", ")));
        for (i, (k, v)) in values.iter().enumerate() {
            req = req
                .expression_attribute_names(format!("#k{i}"), *k)
                .expression_attribute_values(format!(":v{i}"), v.clone());
        }
        req.send().await.unwrap();
    }
}

pub fn answer(res: http::Response<String>) -> Answer {
    let status = res.status();
    let body = serde_json::from_str(res.body()).unwrap_or_else(|e| panic!("not JSON ({e}): {}", res.body()));
    Answer { status, body }
}

pub fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

/// The partition key of a recipient of a campaign created now (sharded).
pub fn recipient_pk(campaign: &str, phone: &str) -> String {
    keys::recipient_pk(campaign, shard_of(RECIPIENT_SHARDS, phone))
}

/// The status index partition of a recipient of a campaign created now, in `status`.
pub fn recipient_status_pk(campaign: &str, phone: &str, status: &str) -> String {
    keys::recipients_in_status(campaign, status, shard_of(RECIPIENT_SHARDS, phone))
}
