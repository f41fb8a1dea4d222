//! `bench-coldstart`: the cold start of the function binary. Each function named in the
//! arguments (by default `get-campaign`, `create-campaign`, `sender`, `whatsapp-webhook` and
//! `authorizer`) is started `--runs` times (default 10): each time a new process of the binary
//! (`--binary`, by default the `bootstrap` built next to this benchmark) with Lambda's
//! environment (`_HANDLER` naming the function, 256 MB, the service's settings) against a
//! stand-in of the Lambda Runtime API ([`local::runtime_api`]) that hands it its sample event
//! from `events/<function>.json`. It prints the binary's size and, per function, the init time,
//! from the spawn to the first `GET …/invocation/next`; the first invoke, from the event handed
//! out to its answer; the peak resident memory; and the answers.
//!
//! The functions talk to the emulator at `AWS_ENDPOINT_URL` (required: nothing reaches AWS);
//! the benchmark first creates the table, queues, event bus and schedule group from
//! `template.yaml` there, so that the first invoke makes its real requests and gets the
//! handlers' ordinary answers (the sample ids exist nowhere: 404s, a refused key). The
//! webhook's secret comes from the environment (in AWS, one Secrets Manager read more).
//!
//! Run with `scripts/bench.sh coldstart [RUNS]` (it builds the function binary and this
//! benchmark and starts the emulators). Not a test: it prints figures.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use local::BoxError;
use local::runtime_api::{Call, Invocation, Outcome, RuntimeApi};
use serde_json::Value;
use shared::config::Config;

const DEFAULT_FUNCTIONS: [&str; 5] = ["get-campaign", "create-campaign", "sender", "whatsapp-webhook", "authorizer"];
const DEFAULT_RUNS: usize = 10;
/// The functions' memory size in `template.yaml` (Globals).
const MEMORY_MB: &str = "256";
/// The app secret the sample webhook event is signed with.
const SAMPLE_APP_SECRET: &str = "sample-app-secret";
/// A WhatsApp API that refuses connections at once: no message leaves the machine.
const NO_WHATSAPP: &str = "http://127.0.0.1:9";
/// How long a process may take to start and answer before the run counts as failed.
const RUN_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a process is checked for having ended early (the times come from the stand-in).
const EXIT_POLL: Duration = Duration::from_millis(10);

struct Args {
    runs: usize,
    binary: PathBuf,
    functions: Vec<String>,
}

const USAGE: &str = "usage: bench-coldstart [--runs N] [--binary PATH] [FUNCTION...]";

/// The arguments, or `None` when only the usage was asked for.
fn parse_args() -> Result<Option<Args>, BoxError> {
    let mut runs = DEFAULT_RUNS;
    let mut binary = None;
    let mut functions = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => {
                runs = args.next().and_then(|n| n.parse().ok()).filter(|n| *n > 0).ok_or("--runs wants N > 0")?
            }
            "--binary" => binary = Some(PathBuf::from(args.next().ok_or("--binary wants a path")?)),
            "-h" | "--help" => return Ok(None),
            flag if flag.starts_with('-') => return Err(format!("unknown option {flag}; {USAGE}").into()),
            _ => functions.push(arg),
        }
    }
    if functions.is_empty() {
        functions = DEFAULT_FUNCTIONS.iter().map(|f| f.to_string()).collect();
    }
    let binary = match binary {
        Some(path) => path,
        // The release build of the functions' binary lands next to this one.
        None => std::env::current_exe()?.with_file_name("bootstrap"),
    };
    Ok(Some(Args { runs, binary, functions }))
}

fn sample_event(name: &str) -> Result<Bytes, BoxError> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../events").join(format!("{name}.json"));
    let text = std::fs::read(&path).map_err(|e| format!("no sample event events/{name}.json: {e}"))?;
    // Compact, as Lambda hands events out.
    Ok(serde_json::to_vec(&serde_json::from_slice::<Value>(&text)?)?.into())
}

/// The service's settings, as `template.yaml` gives them to every function, on the emulator's
/// resources.
fn service_env(config: &Config) -> Vec<(&'static str, String)> {
    let optional = |v: &Option<String>| v.clone().unwrap_or_default();
    vec![
        ("TABLE_NAME", config.table_name.clone()),
        ("DEFAULT_REGION", config.default_region.clone()),
        ("RUST_LOG", "info".into()),
        ("DISPATCH_QUEUE_URL", optional(&config.dispatch_queue_url)),
        ("SEND_QUEUE_URL", optional(&config.send_queue_url)),
        ("STATUS_QUEUE_URL", optional(&config.status_queue_url)),
        ("WHATSAPP_API_URL", config.whatsapp_api_url.clone()),
        ("WHATSAPP_API_VERSION", config.whatsapp_api_version.clone()),
        ("EVENT_BUS_NAME", config.event_bus_name.clone()),
        ("SCHEDULE_GROUP", config.schedule_group.clone()),
        ("ACCOUNT_SECRET_PREFIX", config.account_secret_prefix.clone()),
        ("SCHEDULED_START_FUNCTION_ARN", optional(&config.scheduled_start_function_arn)),
        ("SCHEDULER_ROLE_ARN", optional(&config.scheduler_role_arn)),
        ("SCHEDULE_DEAD_LETTER_QUEUE_ARN", optional(&config.schedule_dead_letter_queue_arn)),
        ("WHATSAPP_APP_SECRET", SAMPLE_APP_SECRET.into()),
        ("WHATSAPP_VERIFY_TOKEN", "bench".into()),
    ]
}

/// What Lambda sets for a function (its runtime API address aside): `_HANDLER` is the Handler
/// in template.yaml, which names the function; dummy credentials; the emulator's endpoints.
fn lambda_env(name: &str) -> Result<Vec<(&'static str, String)>, BoxError> {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").map_err(|_| "AWS_ENDPOINT_URL must point at the emulator")?;
    let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into());
    let mut env = vec![
        ("_HANDLER", name.to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME", name.to_string()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", MEMORY_MB.into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".into()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}")),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "bench".into()),
        ("AWS_REGION", region.clone()),
        ("AWS_DEFAULT_REGION", region),
        ("AWS_ACCESS_KEY_ID", "local".into()),
        ("AWS_SECRET_ACCESS_KEY", "local".into()),
        ("TZ", ":UTC".into()),
        ("AWS_ENDPOINT_URL", endpoint),
    ];
    if let Ok(dynamodb) = std::env::var("AWS_ENDPOINT_URL_DYNAMODB") {
        env.push(("AWS_ENDPOINT_URL_DYNAMODB", dynamodb));
    }
    Ok(env)
}

/// One cold start.
struct Sample {
    /// From the spawn to the first `next`.
    init: Duration,
    /// From the event handed out to its answer.
    invoke: Duration,
    peak_rss_kib: Option<u64>,
    answer: String,
}

/// Starts `binary` once as the function `name` against a new stand-in that hands it `event`,
/// waits for its answer, and kills it.
async fn cold_start(
    binary: &Path,
    name: &str,
    env: &[(&'static str, String)],
    event: &Bytes,
) -> Result<Sample, BoxError> {
    let invocation = Invocation::new(name, event.clone());
    let request_id = invocation.request_id.clone();
    let mut api = RuntimeApi::start(invocation).await?;
    let spawned = Instant::now();
    let mut child = Command::new(binary)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("AWS_LAMBDA_RUNTIME_API", api.address())
        .stdin(Stdio::null())
        .stdout(Stdio::null()) // the function's logs
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("{}: {e}", binary.display()))?;
    let sample = tokio::time::timeout(RUN_TIMEOUT, await_answer(&mut api, &mut child, spawned, &request_id))
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {RUN_TIMEOUT:?}").into()));
    let _ = child.kill();
    let _ = child.wait();
    sample
}

/// Follows the runtime loop's calls until the invocation is answered; the peak memory is read
/// then, before the process is stopped.
async fn await_answer(
    api: &mut RuntimeApi,
    child: &mut Child,
    spawned: Instant,
    request_id: &str,
) -> Result<Sample, BoxError> {
    let mut handed_out = None;
    loop {
        let call = tokio::select! {
            call = api.next_call() => call.ok_or("the runtime API stopped")?,
            _ = tokio::time::sleep(EXIT_POLL) => {
                if let Some(status) = child.try_wait()? {
                    return Err(format!("the process ended ({status}) before it answered").into());
                }
                continue;
            }
        };
        match call {
            Call::HandedOut { at } => handed_out = Some(at),
            Call::Answered { at, request_id: id, outcome, body } => {
                let out = handed_out.ok_or("an answer before the event was handed out")?;
                if id != request_id {
                    return Err(format!("an answer to {id}, not to {request_id}").into());
                }
                let (init, invoke, peak_rss_kib) = (out - spawned, at - out, peak_rss_kib(child.id()));
                return Ok(Sample { init, invoke, peak_rss_kib, answer: summarise(outcome, &body) });
            }
            Call::InitError { body, .. } => {
                return Err(format!("init error: {}", String::from_utf8_lossy(&body)).into());
            }
        }
    }
}

/// The process's peak resident memory (`VmHWM`), in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The answer in a line: an API Gateway response's status and body, else the JSON itself.
fn summarise(outcome: Outcome, body: &[u8]) -> String {
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let text = match (outcome, value["statusCode"].as_u64()) {
        (Outcome::Error, _) => format!("error {value}"),
        (Outcome::Response, Some(status)) => format!("HTTP {status} {}", value["body"].as_str().unwrap_or_default()),
        (Outcome::Response, None) => value.to_string(),
    };
    const WIDTH: usize = 110;
    match text.char_indices().nth(WIDTH) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// The nearest-rank percentile `p` (0–1) of `values`, in milliseconds.
fn percentile_ms(values: &[Duration], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort();
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1));
    sorted.get(rank - 1).map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
}

const MIB: f64 = 1024.0 * 1024.0;

/// Every run of one function.
struct Report {
    name: String,
    samples: Vec<Sample>,
    failures: Vec<String>,
}

impl Report {
    const HEADER: &str =
        "function            init p50  init p90  init max  invoke p50  invoke p90  peak RSS MiB  failed";

    fn row(&self) -> String {
        let init: Vec<Duration> = self.samples.iter().map(|s| s.init).collect();
        let invoke: Vec<Duration> = self.samples.iter().map(|s| s.invoke).collect();
        let rss = self.samples.iter().filter_map(|s| s.peak_rss_kib).max();
        format!(
            "{:<18} {:>9.1} {:>9.1} {:>9.1} {:>11.1} {:>11.1} {:>13} {:>7}",
            self.name,
            percentile_ms(&init, 0.5),
            percentile_ms(&init, 0.9),
            percentile_ms(&init, 1.0),
            percentile_ms(&invoke, 0.5),
            percentile_ms(&invoke, 0.9),
            rss.map_or("-".into(), |kib| format!("{:.1}", kib as f64 * 1024.0 / MIB)),
            self.failures.len(),
        )
    }

    /// Each distinct answer and failure, with how many runs gave it.
    fn details(&self) -> Vec<String> {
        let mut counted = BTreeMap::<&str, usize>::new();
        for text in self.samples.iter().map(|s| s.answer.as_str()).chain(self.failures.iter().map(String::as_str)) {
            *counted.entry(text).or_default() += 1;
        }
        counted.into_iter().map(|(text, n)| format!("  {}: {text} ({n}×)", self.name)).collect()
    }
}

async fn measure(
    binary: &Path,
    name: &str,
    runs: usize,
    service: &[(&'static str, String)],
) -> Result<Report, BoxError> {
    let event = sample_event(name)?;
    let mut env = lambda_env(name)?;
    env.extend(service.iter().cloned());
    let mut report = Report { name: name.to_string(), samples: Vec::new(), failures: Vec::new() };
    for _ in 0..runs {
        match cold_start(binary, name, &env, &event).await {
            Ok(sample) => report.samples.push(sample),
            Err(e) => report.failures.push(format!("failed: {e}")),
        }
    }
    Ok(report)
}

fn main() -> Result<(), BoxError> {
    let Some(args) = parse_args()? else {
        println!("{USAGE}");
        return Ok(());
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let config = Config {
            table_name: format!("coldstart-{}", chrono::Utc::now().timestamp_millis()),
            whatsapp_api_url: NO_WHATSAPP.into(),
            ..Config::from_env()
        };
        let size = std::fs::metadata(&args.binary).map_err(|e| format!("{}: {e}", args.binary.display()))?.len();
        let stack = local::Stack::start(config).await?;
        let service = service_env(&stack.app.config);
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        println!(
            "cold start: {} runs per function, each a new process against a local stand-in of the Lambda Runtime \
             API ({}, {cores} cores); times in ms",
            args.runs,
            std::env::consts::ARCH
        );
        println!("binary {}: {:.1} MiB", args.binary.display(), size as f64 / MIB);
        println!("{}", Report::HEADER);
        let mut details = Vec::new();
        for name in &args.functions {
            match measure(&args.binary, name, args.runs, &service).await {
                Ok(report) => {
                    println!("{}", report.row());
                    details.extend(report.details());
                }
                Err(e) => details.push(format!("  {name}: not measured: {e}")),
            }
        }
        println!(
            "init: from the spawn to the first GET /next; invoke: from the event handed out to its answer \
             (the handler's requests to the emulator included); AWS adds its own sandbox start before init"
        );
        println!("answers:");
        details.iter().for_each(|d| println!("{d}"));
        Ok(())
    })
}
