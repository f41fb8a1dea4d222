//! `local-stack`: builds the table and queues in the emulator, then serves the API.
//! Started by `scripts/local.sh`, which also starts the emulator.

use std::net::SocketAddr;

#[tokio::main]
async fn main() -> Result<(), local::BoxError> {
    shared::config::init_tracing();
    let port: u16 = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(3000);
    let stack = local::Stack::start(shared::config::Config::from_env()).await?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    tracing::info!(table = %stack.app.config.table_name, "API listening on http://{addr}");
    local::server::serve(stack.app, addr).await
}
