//! The library every function of the campaign service links, in layers (each imports only
//! from the layers below it; docs/architecture.md draws them):
//!
//! - [`lambda`]: what a function binary's `main` calls (runtime loops, event mapping).
//! - [`http`]: the route table, request parsing and the envelope; a handler parses its
//!   request, calls one use case and shapes the answer.
//! - [`usecases`]: the workflows (campaigns, lifecycle, import, schedule, send, statuses, keys).
//! - [`app`]: the [`app::App`] they run on (adapters and configuration, built once per process).
//! - [`adapters`]: DynamoDB, SQS, EventBridge Scheduler, EventBridge, Secrets Manager, the
//!   WhatsApp Cloud API and the webhook signature.
//! - [`domain`]: the rules, no I/O, no AWS or HTTP types; [`error`]: the one error type;
//!   [`config`]: the settings read from the environment.

pub mod adapters;
pub mod app;
pub mod config;
pub mod domain;
pub mod error;
pub mod http;
pub mod lambda;
pub mod usecases;
