//! A fake of the WhatsApp Cloud API for the local stack and the tests (never deployed).
//!
//! It answers `POST /{version}/{phone_number_id}/messages` the way Meta does for template
//! messages: it checks the bearer token and the body, answers `200` with a fresh `wamid` or
//! Meta's error envelope, and records every request. Errors can be provoked by recipient number
//! ([`FAULT_NUMBERS`]) or injected through the control API under `/_fake/` (see
//! `docs/fake-whatsapp.md`) and the matching methods of [`FakeState`]. With a `webhook_url`
//! configured ([`FakeConfig`]), accepted sends are followed by signed status webhooks.
//!
//! The parts: `config` (timing and webhooks), `errors` (Meta's error codes and envelope),
//! `faults` (fault numbers, injected rules, ambiguous answers), `state` (what the fake holds and
//! records), `message` (the checks of a send's body and of its template), `send` (how a send is
//! decided, answered and recorded), `routes` (the send endpoint and the control API) and
//! `webhooks` (the status webhooks and the opt-out).

mod config;
mod errors;
mod faults;
mod message;
mod routes;
mod send;
mod state;
mod webhooks;

use std::time::{SystemTime, UNIX_EPOCH};

pub use config::{DEFAULT_TIMEOUT_MS, DEV_APP_SECRET, FakeConfig};
pub use errors::{ERROR_CODES, error_for};
pub use faults::{FAULT_NUMBERS, FakeAnswer, Fault, GATEWAY_502_BODY, GATEWAY_504_BODY, Injection};
pub use message::{HeaderFormat, TemplateSpec, normalize_number};
pub use routes::{MAX_BODY_BYTES, router, serve, spawn};
pub use state::{Account, FakeState, Recorded};
pub use webhooks::{
    DISPLAY_PHONE_NUMBER, InboundText, MAX_DELAY_MS, MAX_STATUSES_PER_POST, TemplateNews, WABA_ID, WEBHOOK_ATTEMPTS,
    WebhookPost, meta_json,
};

/// A random number below `n` (0 when `n` is 0), from the random bits of a v4 UUID; the modulo
/// bias is negligible for the small ranges the fake draws from.
fn random_below(n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    (uuid::Uuid::new_v4().as_u128() % u128::from(n)) as u64
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
