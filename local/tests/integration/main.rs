//! Every route of the API, the sending side and scheduled starts, through the real handlers
//! and SDK, against DynamoDB, SQS and EventBridge Scheduler in the emulator and the fake
//! WhatsApp API.

mod accounts;
mod campaigns;
mod contract;
mod delivery;
mod limits;
mod recipients;
mod routing;
mod scheduling;
mod sending;
mod stack;
mod templates;
