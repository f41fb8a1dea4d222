//! The fake's state behind one lock, shared by every clone of [`FakeState`]: the registered
//! accounts and templates, the injected fault rules, the configuration, the recorded send
//! requests ([`Recorded`]) and the webhook queue; with the methods that read and change it from
//! the tests and the control API.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::config::FakeConfig;
use super::faults::Injection;
use super::message::{TemplateSpec, normalize_number};
use super::webhooks;

/// One request to the send endpoint, accepted or not, as it arrived and as it was answered.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Recorded {
    /// Position in arrival order, from 1 (keeps counting across [`FakeState::clear`]).
    pub seq: u64,
    /// Arrival time in unix milliseconds, never smaller than the previous request's.
    pub at_ms: u64,
    pub version: String,
    pub phone_number_id: String,
    /// `to` as sent (a JSON number is kept as its text); `None` when absent.
    pub to: Option<String>,
    /// The bearer token of the `Authorization` header.
    pub token: Option<String>,
    /// The parsed body, `null` when it was not JSON.
    pub body: Value,
    /// The HTTP status answered (or to be answered, for a delayed answer); 0 when the
    /// connection is broken instead ([`FakeAnswer::Reset`](super::FakeAnswer::Reset)).
    pub status: u16,
    /// `error.code` of the answer, when it was an error.
    pub error_code: Option<u32>,
    /// The message id, when accepted.
    pub wamid: Option<String>,
}

impl Recorded {
    /// Whether the send was answered with a message id (never for a
    /// [`FakeAnswer`](super::FakeAnswer)).
    pub fn accepted(&self) -> bool {
        self.wamid.is_some()
    }
}

/// A registered business phone number: sends for it must carry exactly this token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub phone_number_id: String,
    pub access_token: String,
}

#[derive(Default)]
pub(super) struct Data {
    /// The access token of each registered phone number id.
    pub(super) accounts: HashMap<String, String>,
    /// By name and language.
    pub(super) templates: HashMap<(String, String), TemplateSpec>,
    /// Templates Meta stopped (by name and language): sends with them fail with this code
    /// (132015 paused, 132016 disabled, 132001 rejected).
    pub(super) stopped_templates: HashMap<(String, String), u32>,
    pub(super) faults: Vec<Injection>,
    pub(super) config: FakeConfig,
    requests: Vec<Recorded>,
    seq: u64,
    last_at_ms: u64,
    pub(super) webhooks: webhooks::Queue,
}

impl Data {
    /// Records a send request that arrived at `arrived_ms`, with the next `seq` and an `at_ms`
    /// never smaller than the previous request's.
    pub(super) fn record(&mut self, mut recorded: Recorded, arrived_ms: u64) {
        self.seq += 1;
        self.last_at_ms = arrived_ms.max(self.last_at_ms);
        recorded.seq = self.seq;
        recorded.at_ms = self.last_at_ms;
        self.requests.push(recorded);
    }
}

/// The fake's state: accounts, templates, faults, timing, recorded requests and webhooks.
/// Clones share it.
#[derive(Clone, Default)]
pub struct FakeState {
    data: Arc<Mutex<Data>>,
    pub(super) worker: Arc<webhooks::Worker>,
}

impl FakeState {
    pub fn new() -> FakeState {
        FakeState::default()
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Data> {
        self.data.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every recorded send request, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// The `to` of every accepted send, as `+` and digits, in arrival order.
    pub fn accepted_to(&self) -> Vec<String> {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.accepted())
            .filter_map(|r| r.to.as_deref().and_then(normalize_number))
            .collect()
    }

    /// Forgets the recorded requests and webhook POSTs; returns how many requests there were.
    pub fn clear(&self) -> usize {
        let mut data = self.lock();
        data.webhooks.clear_posts();
        std::mem::take(&mut data.requests).len()
    }

    /// Adds a fault rule; rules are tried in the order they were added, before
    /// [`FAULT_NUMBERS`](super::FAULT_NUMBERS).
    pub fn inject(&self, fault: Injection) {
        self.lock().faults.push(fault);
    }

    /// The fault rules still active (with their remaining `count`).
    pub fn faults(&self) -> Vec<Injection> {
        self.lock().faults.clone()
    }

    /// Removes every injected fault rule; returns how many there were.
    pub fn clear_faults(&self) -> usize {
        std::mem::take(&mut self.lock().faults).len()
    }

    /// Registers (or replaces) the access token of a phone number id.
    pub fn register_account(&self, phone_number_id: impl Into<String>, access_token: impl Into<String>) {
        self.lock().accounts.insert(phone_number_id.into(), access_token.into());
    }

    /// Registers (or replaces) a template, keyed by name and language.
    pub fn register_template(&self, template: TemplateSpec) {
        self.lock().templates.insert((template.name.clone(), template.language.clone()), template);
    }

    pub fn config(&self) -> FakeConfig {
        self.lock().config.clone()
    }

    pub fn set_config(&self, config: FakeConfig) {
        self.lock().config = config;
    }

    /// Back to a fresh fake: no requests, faults, accounts or templates, default config, no
    /// webhooks recorded or waiting (POSTs under way are neither recorded nor retried).
    pub fn reset(&self) {
        let mut data = self.lock();
        let seq = data.seq;
        let last_at_ms = data.last_at_ms;
        let mut webhooks = std::mem::take(&mut data.webhooks);
        webhooks.reset();
        *data = Data { seq, last_at_ms, webhooks, ..Data::default() };
    }
}
