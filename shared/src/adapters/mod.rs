//! The adapters: everything that talks to something outside the process.
//!
//! - [`store`]: DynamoDB (one table; docs/dynamodb.md).
//! - [`queue`]: SQS (the dispatch, send and status queues).
//! - [`scheduler`]: EventBridge Scheduler (a campaign's one-time start).
//! - [`events`]: EventBridge (campaign lifecycle events).
//! - [`objects`]: S3 (uploaded recipient files and exports: presigned URLs, streamed reads, multipart writes).
//! - [`https`]: the HTTPS client of the calls made by hand (WhatsApp, S3).
//! - [`secrets`]: Secrets Manager (account tokens, the webhook's secrets).
//! - [`whatsapp`]: the WhatsApp Cloud API client.
//! - [`metrics`]: CloudWatch metrics, as Embedded Metric Format lines on stdout.
//! - [`signature`]: Meta's webhook signature (HMAC-SHA256).

pub mod aws;
pub mod events;
pub mod https;
pub mod metrics;
pub mod objects;
pub mod queue;
pub mod scheduler;
pub mod secrets;
pub mod signature;
pub mod sigv4;
pub mod store;
pub mod whatsapp;
