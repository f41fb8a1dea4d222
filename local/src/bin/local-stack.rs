//! `local-stack`: the whole service on one machine, against the emulator started by
//! `scripts/local.sh`: the table, queues and schedule group from `template.yaml`, every API
//! route on one port, the dispatcher and sender workers polling the local queues, the firing
//! of due schedules (which the emulator only stores), and — unless
//! `WHATSAPP_API_URL` points elsewhere — the fake WhatsApp Cloud API the senders send to.

use std::net::SocketAddr;

use shared::config::Config;

fn port(var: &str, default: u16) -> u16 {
    std::env::var(var).ok().and_then(|p| p.parse().ok()).unwrap_or(default)
}

#[tokio::main]
async fn main() -> Result<(), local::BoxError> {
    shared::config::init_tracing();
    let mut config = Config::from_env();
    if std::env::var("WHATSAPP_API_URL").is_err() {
        let addr = SocketAddr::from(([127, 0, 0, 1], port("FAKE_WHATSAPP_PORT", 8090)));
        let fake = local::fake_whatsapp::FakeState::new();
        tokio::spawn(async move {
            if let Err(e) = local::fake_whatsapp::serve(fake, addr).await {
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
    let addr = SocketAddr::from(([127, 0, 0, 1], port("PORT", 3000)));
    tracing::info!(
        table = %stack.app.config.table_name,
        whatsapp = %stack.app.config.whatsapp_api_url,
        senders,
        "API listening on http://{addr}"
    );
    local::server::serve(stack.app, addr).await
}
