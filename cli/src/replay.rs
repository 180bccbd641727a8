//! `cairn replay LOG` and `cairn tail LOG`: records as lines, or JSON events.

use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use base64::Engine as _;
use cairn_client::{ReplayEvent, ReplayOptions, ReplayStats, TailFrom};
use serde_json::json;

use crate::cluster::{self, MasterArg};

/// `cairn replay LOG`.
#[derive(clap::Args, Debug)]
pub(crate) struct ReplayArgs {
    /// The log's path.
    log: String,
    /// One JSON object per event: `type` = `record` (chunk, offset, writer as 16 hex digits,
    /// sequence, payload in base64) or `skipped` (chunk, offset, len, reason).
    #[arg(long)]
    json: bool,
    /// Keep every copy of a record appended more than once (dropped by default).
    #[arg(long)]
    keep_duplicates: bool,
    #[command(flatten)]
    master: MasterArg,
}

/// `cairn tail LOG`.
#[derive(clap::Args, Debug)]
pub(crate) struct TailArgs {
    /// The log's path.
    log: String,
    /// JSON events, as `cairn replay --json` prints them.
    #[arg(long)]
    json: bool,
    /// Only records appended after the tail starts (default: from the log's first record).
    #[arg(long)]
    from_end: bool,
    /// Keep every copy of a record appended more than once (dropped by default).
    #[arg(long)]
    keep_duplicates: bool,
    #[command(flatten)]
    master: MasterArg,
}

/// Prints every record of the log, then a summary on stderr.
pub(crate) fn replay(args: &ReplayArgs) -> anyhow::Result<ExitCode> {
    cluster::run(async {
        let client = cluster::connect(&args.master).await?;
        let options = ReplayOptions::default().with_keep_duplicates(args.keep_duplicates);
        let started = Instant::now();
        let mut replay = client
            .replay(&args.log, options)
            .await
            .map_err(cluster::hint)?;
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
        while let Some(event) = replay.next().await {
            print_event(&mut out, &event?, args.json).context("write stdout")?;
        }
        out.flush().context("write stdout")?;
        summary(&args.log, &replay.stats(), started);
        Ok(ExitCode::SUCCESS)
    })
}

/// Prints the log's records, then new ones as they are appended, until Ctrl-C.
pub(crate) fn tail(args: &TailArgs) -> anyhow::Result<ExitCode> {
    cluster::run(async {
        let client = cluster::connect(&args.master).await?;
        let options = ReplayOptions::default().with_keep_duplicates(args.keep_duplicates);
        let from = if args.from_end {
            TailFrom::End
        } else {
            TailFrom::Start
        };
        let mut tail = client
            .tail(&args.log, from, options)
            .await
            .map_err(cluster::hint)?;
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        loop {
            let event = tokio::select! {
                e = tail.next() => e,
                _ = tokio::signal::ctrl_c() => break,
            };
            let Some(event) = event else { break };
            print_event(&mut out, &event?, args.json).context("write stdout")?;
            out.flush().context("write stdout")?;
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn print_event(out: &mut impl Write, event: &ReplayEvent, json: bool) -> std::io::Result<()> {
    match event {
        ReplayEvent::Record {
            id,
            chunk,
            offset,
            payload,
        } => {
            if json {
                let line = json!({
                    "type": "record",
                    "chunk": chunk,
                    "offset": offset,
                    "writer": id.writer.to_string(),
                    "sequence": id.sequence,
                    "payload": base64::engine::general_purpose::STANDARD.encode(payload),
                });
                writeln!(out, "{line}")
            } else {
                out.write_all(payload)?;
                out.write_all(b"\n")
            }
        }
        ReplayEvent::Skipped {
            chunk,
            offset,
            len,
            reason,
        } => {
            if json {
                let line = json!({
                    "type": "skipped",
                    "chunk": chunk,
                    "offset": offset,
                    "len": len,
                    "reason": reason,
                });
                writeln!(out, "{line}")
            } else {
                // Plain output is the payloads only; damage is reported on stderr.
                eprintln!("skipped {len} bytes at chunk {chunk} offset {offset}: {reason}");
                Ok(())
            }
        }
        // A kind of event newer than this command: said on stderr, never dropped unseen.
        other => {
            eprintln!("an event this version of cairn cannot show: {other:?}");
            Ok(())
        }
    }
}

fn summary(log: &str, s: &ReplayStats, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "replayed {} records ({} payload bytes) of {log} in {secs:.2} s; {} duplicates dropped, {} padding bytes, {} skipped ranges ({} bytes)",
        s.records,
        s.payload_bytes,
        s.duplicates_dropped,
        s.padding_bytes,
        s.skipped_ranges,
        s.skipped_bytes
    );
}
