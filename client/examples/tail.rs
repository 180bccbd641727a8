//! Follows a log: prints its records on stdout (`writer:sequence chunk C offset O: payload`)
//! as they arrive, across chunk rolls, until Ctrl-C or, with `--count N`, until it has printed
//! N records. From the log's first record, or with `--from-end` only records appended after it
//! started.
//!
//! Against a local cluster (README, "Try it"), from the repository's root; then append from
//! another terminal (the `append` example, or `cairn append /events`):
//!
//! ```text
//! cargo build --release -p cairn-cli
//! ./target/release/cairn local --data /tmp/cairn-demo &
//! cargo run -p cairn-client --example tail -- /events --from-end
//! ```
//!
//! What it shows: `Client::tail` with `TailFrom::Start` or `TailFrom::End`; `Tail::next`,
//! which waits for new records and never ends by itself (it fails only when the log is
//! deleted), raced against Ctrl-C; dropping the tail stops it.

use std::process::ExitCode;

use cairn_client::{Client, ReplayEvent, ReplayOptions, TailFrom};
use clap::Parser;

/// Follow a Cairn log.
#[derive(Parser, Debug)]
struct Args {
    /// The log's path (it starts with `/`).
    log: String,
    /// Print only records appended after the tail started.
    #[arg(long)]
    from_end: bool,
    /// Stop after printing this many records.
    #[arg(long)]
    count: Option<u64>,
    /// The master's address, HOST:PORT.
    #[arg(long, env = "CAIRN_MASTER", default_value = "127.0.0.1:7000")]
    master: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let client = Client::connect(&args.master).await?;
    let from = if args.from_end {
        TailFrom::End
    } else {
        TailFrom::Start
    };
    let mut tail = client
        .tail(&args.log, from, ReplayOptions::default())
        .await?;
    // From here on, every record appended is printed.
    eprintln!("following {} (Ctrl-C to stop)", args.log);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut printed = 0;
    while args.count.is_none_or(|count| printed < count) {
        let event = tokio::select! {
            // Ctrl-C first: its handler is installed when it is first polled, so before the
            // first record is printed.
            biased;
            _ = &mut ctrl_c => {
                eprintln!("interrupted");
                break;
            }
            event = tail.next() => event,
        };
        match event {
            Some(Ok(ReplayEvent::Record {
                id,
                chunk,
                offset,
                payload,
            })) => {
                println!(
                    "{id} chunk {chunk} offset {offset}: {}",
                    String::from_utf8_lossy(&payload)
                );
                printed += 1;
            }
            Some(Ok(ReplayEvent::Skipped {
                chunk,
                offset,
                len,
                reason,
            })) => eprintln!("skipped {len} bytes at chunk {chunk} offset {offset}: {reason}"),
            Some(Ok(other)) => eprintln!("an event this example does not know: {other:?}"),
            // The log was deleted.
            Some(Err(e)) => return Err(e.into()),
            None => break,
        }
    }
    let s = tail.stats();
    eprintln!(
        "{printed} records printed; {} duplicates dropped, {} skipped ranges",
        s.duplicates_dropped, s.skipped_ranges
    );
    Ok(ExitCode::SUCCESS)
}
