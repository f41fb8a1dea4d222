//! The library every function of the campaign service links.
//!
//! - [`domain`]: the rules (accounts, templates, campaigns, recipients, imports), no I/O.
//! - [`store`]: the DynamoDB adapter.
//! - [`api`]: the route table and one handler per route.
//! - [`auth`]: the API-key check (the authorizer function and the local server run it).
//! - [`sending`]: the dispatcher and the sender (SQS-triggered).
//! - [`scheduling`]: the scheduled start (invoked by EventBridge Scheduler).
//! - [`queue`], [`scheduler`], [`whatsapp`]: the SQS, EventBridge Scheduler and WhatsApp Cloud
//!   API adapters; [`secrets`]: secret values and the Secrets Manager adapter.
//! - [`lambda`]: the wiring a Lambda binary's `main` calls.

pub mod api;
pub mod auth;
pub mod config;
pub mod delivery;
pub mod domain;
pub mod error;
pub mod events;
pub mod lambda;
pub mod queue;
pub mod scheduler;
pub mod scheduling;
pub mod secrets;
pub mod sending;
pub mod signature;
pub mod store;
pub mod whatsapp;
