//! Replies and clicks: an inbound message that answers a campaign message (its `context.id`
//! is the message's wamid) within 72 hours of the message's delivery is attributed to the
//! campaign — the recipient's `replied_at` and the campaign's `replied_count`; a quick-reply
//! button press also records `clicked_at`, the button's text and `clicked_count`. Each counts
//! once per recipient, however often Meta delivers the webhook (a conditional write with the
//! count in one transaction).

use std::collections::{HashMap, HashSet};

use crate::adapters::store::StoreError;
use crate::app::App;
use crate::domain::delivery::Inbound;
use crate::domain::recipient::RecipientKey;

/// What the answers changed: recipients who replied, and who clicked, for the first time.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Answered {
    pub replies: usize,
    pub clicks: usize,
}

pub async fn apply(app: &App, inbound: &[&Inbound]) -> Result<Answered, StoreError> {
    let mut answered = Answered::default();
    let wamids: Vec<String> =
        inbound.iter().filter_map(|m| m.context.clone()).collect::<HashSet<_>>().into_iter().collect();
    if wamids.is_empty() {
        return Ok(answered);
    }
    let keys: HashMap<String, RecipientKey> = app.db.recipients_by_wamid(&wamids).await?.into_iter().collect();
    let wanted: Vec<RecipientKey> = keys.values().cloned().collect::<HashSet<_>>().into_iter().collect();
    let recipients: HashMap<RecipientKey, _> =
        app.db.recipients_at(&wanted).await?.into_iter().map(|r| (RecipientKey::of(&r), r)).collect();
    let mut campaigns = HashMap::new();
    for m in inbound {
        let Some(wamid) = &m.context else { continue };
        let Some(r) = keys.get(wamid).and_then(|k| recipients.get(k)) else { continue };
        if r.wamid.as_deref() != Some(wamid.as_str()) || !m.answers_in_time(r.delivered_at.as_ref()) {
            continue;
        }
        if !campaigns.contains_key(&r.campaign_id) {
            campaigns.insert(r.campaign_id.clone(), app.db.get_campaign(&r.campaign_id).await?);
        }
        let Some(Some(campaign)) = campaigns.get(&r.campaign_id) else { continue };
        let at = m.at.as_deref().unwrap_or_default();
        let phone = r.phone_number.as_str();
        answered.replies += app.db.record_answer(campaign, phone, wamid, at, None).await? as usize;
        if m.button {
            answered.clicks += app.db.record_answer(campaign, phone, wamid, at, Some(m.text.trim())).await? as usize;
        }
    }
    Ok(answered)
}
