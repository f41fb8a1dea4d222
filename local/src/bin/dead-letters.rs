//! `dead-letters`: lists what landed in the local stack's dead-letter queues, or moves a
//! dead-letter queue's messages back to the queue that feeds it:
//!
//! ```text
//! dead-letters                              # every dead-letter queue: count and up to 10 bodies
//! dead-letters redrive SendDeadLetterQueue  # back to SendQueue
//! ```
//!
//! Against the emulator of a running `scripts/local.sh` (same `TABLE_NAME`).

#[tokio::main]
async fn main() -> Result<(), local::BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let stack = local::Stack::start(shared::config::Config::from_env()).await?;
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [] => {
            for q in local::dead_letters::list(&stack.sqs, &stack.queues).await? {
                let source = q.source.as_deref().unwrap_or("the scheduler");
                println!("{} ({} messages, from {source})", q.queue, q.count);
                for body in q.sample {
                    println!("  {body}");
                }
            }
        }
        ["redrive", queue] => {
            let moved = local::dead_letters::redrive(&stack.sqs, &stack.queues, queue).await?;
            println!("moved {moved} messages from {queue} back to its queue");
        }
        _ => return Err("usage: dead-letters [redrive <DeadLetterQueue logical id>]".into()),
    }
    Ok(())
}
