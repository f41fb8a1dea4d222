//! `POST /api/campaigns/{id}/test`: one message of the campaign, rendered for a number and
//! fields given in the request, sent now through the account's pace — so that an operator sees
//! the real message before everyone does. It is not a recipient: nothing is counted, and its
//! statuses are ignored (its `biz_opaque_callback_data` says it is a test). The answer is
//! WhatsApp's: the message id, or the error code and message.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::adapters::store::sending::Reservation;
use crate::adapters::whatsapp::SendOutcome;
use crate::app::App;
use crate::domain::delivery::TEST_SEND_CALLBACK;
use crate::domain::id::Id;
use crate::domain::opt_out;
use crate::domain::phone::Phone;
use crate::domain::recipient::Recipient;
use crate::domain::sending::{HeaderValues, SLOT_HORIZON, interval_micros, message_body};
use crate::error::{AppError, AppResult};
use crate::usecases::campaigns::{checked_template, load};

/// How long a test send waits for a slot on a busy account's pace.
const SLOT_WAIT: Duration = Duration::from_secs(10);

/// The body of a test send.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestSend {
    pub phone_number: String,
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
}

/// What WhatsApp answered.
#[derive(Debug, Serialize)]
pub struct TestSent {
    /// `accepted`, `rejected` (with Meta's code and message) or `unknown` (no answer came:
    /// WhatsApp may have taken it).
    pub outcome: &'static str,
    pub phone_number: Phone,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wamid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// The request as it went to WhatsApp (none when it was not sent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<Value>,
}

impl TestSent {
    fn refused(phone: Phone, code: Option<i64>, message: String, request: Option<Value>) -> Self {
        let outcome = if code.is_some() { "rejected" } else { "unknown" };
        TestSent { outcome, phone_number: phone, wamid: None, error_code: code, error_message: Some(message), request }
    }
}

pub async fn send_test(app: &App, id: &Id, test: TestSend) -> AppResult<TestSent> {
    let phone = app
        .phones
        .normalize(&test.phone_number)
        .map_err(|why| AppError::invalid(format!("phone_number '{}' is not usable: {why}", test.phone_number)))?;
    let campaign = load(app, id).await?;
    let template = checked_template(app, &campaign).await?;
    let missing: Vec<String> =
        campaign.required_fields().into_iter().filter(|f| !test.fields.contains_key(f)).collect();
    if !missing.is_empty() {
        return Err(AppError::invalid(format!(
            "fields: the campaign's variable_mapping needs {}; give them in fields",
            missing.join(", ")
        )));
    }
    let read = app.store_err("could not read the campaign's account");
    let account = app.db.get_account(&campaign.account_id).await.map_err(&read)?;
    let account =
        account.ok_or_else(|| AppError::invalid(format!("account {} no longer exists", campaign.account_id)))?;
    let token =
        app.tokens.get(&account.id).await.map_err(|e| AppError::unavailable("could not read the access token", e))?;
    let token = token.ok_or_else(|| {
        AppError::invalid(format!(
            "account {} has no access token; set it with PUT /api/accounts/{}",
            account.id, account.id
        ))
    })?;
    if opt_out::applies_to(template.category)
        && app.db.opted_out(&account.id, &[phone.as_str()]).await.map_err(&read)?.contains(&phone)
    {
        return Ok(TestSent::refused(phone, Some(opt_out::OPTED_OUT_CODE), opt_out::not_sent(), None));
    }
    let recipient = Recipient::pending(&campaign.id, 0, phone.clone(), test.fields, &crate::domain::now());
    let callback = format!("{TEST_SEND_CALLBACK}{}", campaign.id);
    let values = HeaderValues::of(&campaign);
    let body = message_body(&template, &campaign.variable_mapping, values, &recipient, &callback)
        .map_err(|unsendable| AppError::invalid(format!("the message cannot be rendered: {unsendable}")))?;
    wait_for_slot(app, &account.id, account.send_rate()).await?;
    let answer = app.whatsapp.send(&account.phone_number_id, &token, &body).await;
    Ok(match answer {
        SendOutcome::Accepted { wamid } => TestSent {
            outcome: "accepted",
            phone_number: phone,
            wamid: Some(wamid),
            error_code: None,
            error_message: None,
            request: Some(body),
        },
        SendOutcome::Rejected { code, message } => TestSent::refused(phone, Some(code), message, Some(body)),
        SendOutcome::Unreachable { message } | SendOutcome::Unknown { message } => {
            TestSent::refused(phone, None, message, Some(body))
        }
    })
}

/// Takes one slot on the account's pace (shared with its campaigns) and waits for it.
async fn wait_for_slot(app: &App, account_id: &str, rate: u32) -> AppResult<()> {
    let give_up = Instant::now() + SLOT_WAIT;
    let now_us = || chrono::Utc::now().timestamp_micros();
    loop {
        let reserved = app
            .db
            .reserve_slots(account_id, 1, interval_micros(rate), SLOT_HORIZON)
            .await
            .map_err(app.store_err("could not take a send slot on the account's pace"))?;
        let (at, granted) = match reserved {
            Reservation::Granted(at) => (at, true),
            Reservation::Busy { retry_at } => (retry_at, false),
        };
        let wait = Duration::from_micros((at - now_us()).max(0) as u64);
        if Instant::now() + wait > give_up {
            return Err(AppError::conflict(
                "the account's pace is taken by its sending campaigns for the next seconds; try the test again",
            ));
        }
        tokio::time::sleep(wait).await;
        if granted {
            return Ok(());
        }
    }
}
