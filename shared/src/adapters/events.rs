//! The EventBridge adapter: publishes campaign lifecycle events
//! ([`crate::domain::events::CampaignEvent`]) on the configured bus, so that users can hook
//! their own automation onto campaigns.

use crate::domain::campaign::{Campaign, CampaignStatus};
use crate::domain::events::{CampaignEvent, SOURCE, detail};

/// Publishes to the configured bus. A failure to publish is logged and does not undo or fail
/// the change it announces.
#[derive(Clone, Debug)]
pub struct EventBus {
    client: aws_sdk_eventbridge::Client,
    bus: String,
}

impl EventBus {
    pub fn new(client: aws_sdk_eventbridge::Client, bus: String) -> Self {
        EventBus { client, bus }
    }

    pub async fn publish(&self, event: CampaignEvent, c: &Campaign, previous: CampaignStatus) {
        let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source(SOURCE)
            .detail_type(event.name())
            .resources(format!("campaign/{}", c.id))
            .detail(detail(event, c, previous).to_string())
            .build();
        match self.client.put_events().entries(entry).send().await {
            Ok(out) if out.failed_entry_count == 0 => {
                tracing::info!(campaign = %c.id, event = event.name(), "event published");
            }
            Ok(out) => {
                let reason = out.entries().first().and_then(|e| e.error_message()).unwrap_or("unknown").to_string();
                tracing::error!(campaign = %c.id, event = event.name(), reason, "event not published");
            }
            Err(e) => {
                let e = aws_sdk_eventbridge::error::DisplayErrorContext(&e);
                tracing::error!(campaign = %c.id, event = event.name(), error = %e, "event not published");
            }
        }
    }
}
