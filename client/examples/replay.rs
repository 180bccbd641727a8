//! Replays a log: prints every record on stdout (`writer:sequence chunk C offset O: payload`),
//! in log order, then the replay's counts on stderr; bytes that no replica holds whole are
//! reported on stderr as `skipped …` events, never passed over silently.
//!
//! Against a local cluster (README, "Try it"), from the repository's root, after the `append`
//! example:
//!
//! ```text
//! cargo build --release -p cairn-cli
//! ./target/release/cairn local --data /tmp/cairn-demo &
//! cargo run -p cairn-client --example replay -- /events
//! ```
//!
//! What it shows: `Client::replay` and `Replay::next` until `None`; `ReplayEvent::Record` and
//! `ReplayEvent::Skipped` (and a wildcard arm: more kinds of events may come); `Replay::stats`;
//! `--keep-duplicates` (`ReplayOptions::with_keep_duplicates`) to see every stored copy of a
//! record instead of the first one per (writer, sequence).

use std::process::ExitCode;

use cairn_client::{Client, ReplayEvent, ReplayOptions};
use clap::Parser;

/// Replay a Cairn log.
#[derive(Parser, Debug)]
struct Args {
    /// The log's path (it starts with `/`).
    log: String,
    /// Print every stored copy of a record appended more than once.
    #[arg(long)]
    keep_duplicates: bool,
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
    let options = ReplayOptions::default().with_keep_duplicates(args.keep_duplicates);
    let mut replay = client.replay(&args.log, options).await?;
    while let Some(event) = replay.next().await {
        // An error ends the replay: reads were retried for 30 s without progress.
        match event? {
            ReplayEvent::Record {
                id,
                chunk,
                offset,
                payload,
            } => println!(
                "{id} chunk {chunk} offset {offset}: {}",
                String::from_utf8_lossy(&payload)
            ),
            ReplayEvent::Skipped {
                chunk,
                offset,
                len,
                reason,
            } => eprintln!("skipped {len} bytes at chunk {chunk} offset {offset}: {reason}"),
            other => eprintln!("an event this example does not know: {other:?}"),
        }
    }
    let s = replay.stats();
    eprintln!(
        "{} records ({} payload bytes); {} duplicates dropped, {} padding bytes, {} skipped \
         ranges ({} bytes)",
        s.records,
        s.payload_bytes,
        s.duplicates_dropped,
        s.padding_bytes,
        s.skipped_ranges,
        s.skipped_bytes
    );
    Ok(ExitCode::SUCCESS)
}
