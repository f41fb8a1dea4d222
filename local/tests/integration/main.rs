//! Every route of the API behind its API-key check, the sending side and scheduled starts,
//! through the real handlers and SDK, against DynamoDB, SQS, EventBridge Scheduler and Secrets
//! Manager in the emulator and the fake WhatsApp API.

mod accounts;
mod api_keys;
mod campaigns;
mod contract;
mod daily_cap;
mod delivery;
mod exports;
mod faults;
mod flow;
mod headers;
mod limits;
mod metrics;
mod operations;
mod recipients;
mod routing;
mod scheduling;
mod sending;
mod stack;
mod tally;
mod templates;
mod uploads;
mod windows;
