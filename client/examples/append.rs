//! Appends records to a log, pipelined: creates the log if it is missing, queues `--count`
//! records (`"<prefix> 1"`, `"<prefix> 2"`, …) without waiting for each acknowledgement, then
//! prints a summary (with `--acks`, each record's acknowledgement too: its writer id and
//! sequence, chunk and offset).
//!
//! Against a local cluster (README, "Try it"), from the repository's root:
//!
//! ```text
//! cargo build --release -p cairn-cli
//! ./target/release/cairn local --data /tmp/cairn-demo &
//! cargo run -p cairn-client --example append -- /events --count 1000 --acks
//! ```
//!
//! What it shows: `Appender::append` returns at once with a future of the record's
//! acknowledgement (the appender batches queued records and keeps several batches in flight);
//! `Appender::ready` bounds what is queued; an acknowledgement means every replica holds the
//! record durably; a failed record may still be in the log (the crate's guide, "Errors and
//! retries").

use std::process::ExitCode;
use std::time::Instant;

use bytes::Bytes;
use cairn_client::{AppendAck, Client, Error, LogOptions};
use clap::Parser;

/// Append records to a Cairn log, pipelined.
#[derive(Parser, Debug)]
struct Args {
    /// The log's path (it starts with `/`); created if it is missing.
    log: String,
    /// How many records to append.
    #[arg(long, default_value_t = 100)]
    count: u64,
    /// Record i's payload is "<PREFIX> i".
    #[arg(long, default_value = "record")]
    prefix: String,
    /// Print each record's acknowledgement.
    #[arg(long)]
    acks: bool,
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
    match client.create_log(&args.log, LogOptions::default()).await {
        Ok(info) => println!(
            "created {}: replication {}, chunks of {} bytes",
            info.path, info.replication, info.chunk_bytes
        ),
        Err(Error::LogExists { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let appender = client.appender(&args.log).await?;
    let writer = appender.writer_id();
    let started = Instant::now();

    // Queue every record first: `append` fixes the record's sequence at the call and returns
    // the future of its acknowledgement; the records travel while later ones are queued.
    let mut acks = Vec::new();
    for i in 1..=args.count {
        // Waits only while 64 MiB of payloads are queued or in flight.
        appender.ready().await;
        let payload = Bytes::from(format!("{} {i}", args.prefix));
        acks.push((i, appender.append(payload)));
    }
    let mut failed = 0;
    for (i, ack) in acks {
        match ack.await {
            Ok(ack) if args.acks => println!("record {i}: {}", describe(&ack)),
            Ok(_) => {}
            Err(e) => {
                // Indeterminate: the record may be in the log even so.
                failed += 1;
                eprintln!("record {i} failed: {e}");
            }
        }
    }
    // Waits for every queued record; a failure was already reported per record.
    if let Err(e) = appender.close().await {
        eprintln!("the appender closed after a failure: {e}");
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "appended {} of {} records to {} in {secs:.2} s ({:.0} records/s); {failed} failed; \
         writer {writer}",
        args.count - failed,
        args.count,
        args.log,
        (args.count - failed) as f64 / secs.max(1e-9),
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Where an acknowledged record is: `writer:sequence at chunk C offset O`.
fn describe(ack: &AppendAck) -> String {
    match (ack.chunk, ack.offset) {
        (Some(chunk), Some(offset)) => format!("{} at chunk {chunk} offset {offset}", ack.id),
        // A retried record the primary found stored already, without knowing where.
        _ => format!("{} already stored (place unknown)", ack.id),
    }
}
