//! `fake-whatsapp`: a fake of the WhatsApp Cloud API on `127.0.0.1:${FAKE_WHATSAPP_PORT:-8090}`,
//! posting status webhooks to `FAKE_WEBHOOK_URL` when set. See `docs/fake-whatsapp.md`.

use std::net::SocketAddr;

use local::fake_whatsapp::{self, FakeConfig, FakeState};

#[tokio::main]
async fn main() -> Result<(), local::BoxError> {
    shared::config::init_tracing();
    let port: u16 = match std::env::var("FAKE_WHATSAPP_PORT") {
        Ok(p) => p.trim().parse().map_err(|_| format!("FAKE_WHATSAPP_PORT is not a port number: {p:?}"))?,
        Err(_) => 8090,
    };
    let state = FakeState::new();
    state.set_config(FakeConfig::from_env()?);
    // `serve` logs the address once it listens.
    fake_whatsapp::serve(state, SocketAddr::from(([127, 0, 0, 1], port))).await
}
