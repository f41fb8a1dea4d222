//! Every route of the API through the real dispatcher, against DynamoDB in the emulator.

mod accounts;
mod campaigns;
mod recipients;
mod routing;
mod stack;
mod templates;
