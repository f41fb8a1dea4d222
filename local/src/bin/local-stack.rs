//! `local-stack`: the whole service on one machine, against the emulator started by
//! `scripts/local.sh`: the table, queues, schedule group and event bus from `template.yaml`,
//! every API route on one port (the webhook included), the dispatcher and sender workers
//! polling the local queues, the firing of due schedules (which the emulator only stores), and
//! — unless `WHATSAPP_API_URL` points elsewhere — the fake WhatsApp Cloud API the senders send
//! to, which posts its signed status webhooks back to this stack's webhook route. The API
//! wants a key, as in AWS: `LOCAL_API_KEY`, or one made at start and printed.

use std::net::SocketAddr;

use local::fake_whatsapp::{self, FakeConfig, FakeState};
use shared::config::Config;
use shared::domain::api_key::NewApiKey;

fn port(var: &str, default: u16) -> u16 {
    std::env::var(var).ok().and_then(|p| p.parse().ok()).unwrap_or(default)
}

#[tokio::main]
async fn main() -> Result<(), local::BoxError> {
    shared::config::init_tracing();
    let mut config = Config::from_env();
    // The webhook's secrets: from the environment when set, else the development values the
    // fake WhatsApp API signs with.
    config.whatsapp_app_secret.get_or_insert_with(|| fake_whatsapp::DEV_APP_SECRET.into());
    config.whatsapp_verify_token.get_or_insert_with(|| local::DEV_VERIFY_TOKEN.into());
    let api_port = port("PORT", 3000);
    if std::env::var("WHATSAPP_API_URL").is_err() {
        let addr = SocketAddr::from(([127, 0, 0, 1], port("FAKE_WHATSAPP_PORT", 8090)));
        let fake = FakeState::new();
        // Signed with WHATSAPP_APP_SECRET (or the development default the service also uses).
        let mut fake_config = FakeConfig::from_env()?;
        fake_config.webhook_url.get_or_insert_with(|| format!("http://127.0.0.1:{api_port}/webhooks/whatsapp"));
        fake.set_config(fake_config);
        tokio::spawn(async move {
            if let Err(e) = fake_whatsapp::serve(fake, addr).await {
                tracing::error!(error = %e, "the fake WhatsApp API stopped");
            }
        });
        config.whatsapp_api_url = format!("http://{addr}");
    }
    let senders = port("SENDER_WORKERS", 4) as usize;
    let stack = local::Stack::start(config).await?;
    let workers = local::workers::Workers { senders, ..Default::default() };
    workers.spawn(stack.app.clone(), stack.sqs.clone());
    stack.fire_schedules(&local::schedules::Firing::default());
    let key = development_key(&stack.app).await?;
    let addr = SocketAddr::from(([127, 0, 0, 1], api_port));
    println!("API key: {key}\n  send it as  X-API-Key: {key}  or  Authorization: Bearer {key}");
    tracing::info!(
        table = %stack.app.config.table_name,
        events = %stack.event_tap_url,
        whatsapp = %stack.app.config.whatsapp_api_url,
        senders,
        "API listening on http://{addr}"
    );
    local::server::serve(stack.app, addr).await
}

/// The key for the API: `LOCAL_API_KEY` when set (registered in the table, so that the same
/// check as in AWS accepts it), else a new one.
async fn development_key(app: &shared::app::App) -> Result<String, local::BoxError> {
    match std::env::var("LOCAL_API_KEY").ok().filter(|k| !k.trim().is_empty()) {
        Some(key) => {
            let new = NewApiKey { name: "local development key (LOCAL_API_KEY)".into() };
            shared::usecases::keys::register(&app.db, new, key.trim().into())
                .await
                .map_err(|e| format!("LOCAL_API_KEY: {}", e.message))?;
            Ok(key.trim().to_string())
        }
        None => {
            let new = NewApiKey { name: "local development key".into() };
            Ok(shared::usecases::keys::issue(&app.db, new).await?.secret.expose().to_string())
        }
    }
}
