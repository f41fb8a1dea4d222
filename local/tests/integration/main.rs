//! Every route of the API and the sending side, through the real handlers and SDK, against
//! DynamoDB and SQS in the emulator and the fake WhatsApp API.

mod accounts;
mod campaigns;
mod delivery;
mod recipients;
mod routing;
mod sending;
mod stack;
mod templates;
