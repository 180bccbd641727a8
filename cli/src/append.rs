//! `cairn append LOG`: each input line (newline removed) is one record, many in flight.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use bytes::Bytes;
use cairn_client::{AppendAck, WriterId};
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::mpsc;

use crate::cluster::{self, MasterArg};

/// Most input lines read ahead of their acknowledgements (the appender also bounds bytes).
const LINES_IN_FLIGHT_MAX: usize = 1 << 16;

/// Lines handed from the reader task to the appending loop at a time.
const LINE_QUEUE_MAX: usize = 4096;

/// Failures printed one by one before only the summary counts them.
const FAILURES_SHOWN_MAX: usize = 10;

/// `cairn append LOG`.
#[derive(clap::Args, Debug)]
pub(crate) struct AppendArgs {
    /// The log's path (it must exist: `cairn create` it first).
    log: String,
    /// Read records from this file instead of stdin.
    #[arg(long)]
    file: Option<PathBuf>,
    /// Print one JSON line per acknowledged record, as soon as it is acknowledged:
    /// {"line":N,"chunk":I,"offset":O,"writer":"W","sequence":S}, W the writer id as 16 hex
    /// digits (as every cairn command shows writer ids).
    #[arg(long)]
    json: bool,
    /// Append as this writer id, in hex as cairn prints it (16 digits; a 0x prefix and fewer
    /// digits are accepted), resuming it: the master hands out a
    /// new epoch, so an older process still appending as this writer is fenced, and records
    /// re-sent under the same (writer, sequence) are stored once. Without it, a random writer.
    #[arg(long, value_parser = parse_writer)]
    writer: Option<WriterId>,
    /// With --writer: the sequence of the first input line (the next ones follow). Re-running
    /// after a crash with the same input from line N and --first-sequence N stores each line
    /// once; sequences before N count as acknowledged. A line whose (writer, sequence) is
    /// already stored but too long ago to be compared (older than the writer's last 4,096
    /// records in the open chunk, or in an earlier chunk) is not stored again and is counted as
    /// "already stored, not compared" (with --json: "unverified":true), not as a failure.
    #[arg(long, requires = "writer", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    first_sequence: u64,
    #[command(flatten)]
    master: MasterArg,
}

/// A non-zero writer id in hex, as cairn prints them (`00000000000000ff`; `0xff` and `ff` too).
fn parse_writer(s: &str) -> Result<WriterId, String> {
    let hex = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    let id = u64::from_str_radix(hex, 16).map_err(|e| {
        format!("{s:?} is not a writer id (up to 16 hex digits, as cairn prints them): {e}")
    })?;
    if id == 0 {
        return Err("writer id 0 is reserved".into());
    }
    Ok(WriterId(id))
}

/// Appends every input line as a record.
pub(crate) fn run(args: &AppendArgs) -> anyhow::Result<ExitCode> {
    cluster::run(async {
        let input: Box<dyn AsyncRead + Unpin + Send> = match &args.file {
            Some(path) => Box::new(
                tokio::fs::File::open(path)
                    .await
                    .with_context(|| format!("open {}", path.display()))?,
            ),
            None => Box::new(tokio::io::stdin()),
        };
        let client = cluster::connect(&args.master).await?;
        let appender = match args.writer {
            Some(writer) => client
                .resume_appender(&args.log, writer, args.first_sequence)
                .await
                .map_err(cluster::hint)?,
            None => client.appender(&args.log).await.map_err(cluster::hint)?,
        };
        // Shown in hex, as every command shows writer ids and as --writer takes them.
        let writer = appender.writer_id();
        let started = Instant::now();

        let (tx, mut lines) = mpsc::channel::<std::io::Result<Vec<u8>>>(LINE_QUEUE_MAX);
        tokio::spawn(read_lines(input, tx));

        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        let mut in_flight = FuturesUnordered::new();
        let (mut read, mut acked, mut failed, mut unverified) = (0u64, 0u64, 0u64, 0u64);
        let mut first_failure: Option<String> = None;
        let mut input_open = true;
        loop {
            if !input_open && in_flight.is_empty() {
                break;
            }
            tokio::select! {
                line = lines.recv(), if input_open && in_flight.len() < LINES_IN_FLIGHT_MAX => {
                    match line {
                        None => input_open = false,
                        Some(Err(e)) => return Err(e).context("read the input"),
                        Some(Ok(line)) => {
                            read += 1;
                            appender.ready().await;
                            let ack = appender.append(Bytes::from(line));
                            let n = read;
                            in_flight.push(async move { (n, ack.await) });
                        }
                    }
                }
                Some((n, result)) = in_flight.next(), if !in_flight.is_empty() => {
                    let mut next = Some((n, result));
                    // Print everything acknowledged by now, then flush once.
                    while let Some((n, result)) = next.take() {
                        match result {
                            Ok(ack) => {
                                acked += 1;
                                if args.json {
                                    writeln!(out, "{}", ack_json(n, &ack)).context("write stdout")?;
                                }
                            }
                            Err(cairn_client::Error::UnverifiedDuplicate { sequence, .. }) => {
                                // Stored earlier under this writer (a resumed run re-sending
                                // old lines): not stored again, its bytes not compared.
                                unverified += 1;
                                if unverified == 1 {
                                    eprintln!(
                                        "line {n}: writer {writer} sequence {sequence} is already \
                                         stored, too long ago to be compared; not stored again"
                                    );
                                }
                                if args.json {
                                    writeln!(out, "{}", unverified_json(n, writer, sequence))
                                        .context("write stdout")?;
                                }
                            }
                            Err(e) => {
                                failed += 1;
                                let message = format!("line {n}: {e}");
                                // The first failure is the final error line; a few more are
                                // shown as they happen.
                                if first_failure.is_none() {
                                    first_failure = Some(message);
                                } else if failed as usize <= FAILURES_SHOWN_MAX {
                                    eprintln!("also failed: {message}");
                                }
                            }
                        }
                        next = futures_util::FutureExt::now_or_never(in_flight.next()).flatten();
                    }
                    out.flush().context("write stdout")?;
                }
            }
        }
        out.flush().context("write stdout")?;
        drop(out);
        let _ = appender.close().await;
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "appended {acked} of {read} records to {} in {secs:.2} s ({:.0} records/s), {failed} failed; writer {writer}",
            args.log,
            acked as f64 / secs.max(1e-9),
        );
        if unverified > 0 {
            eprintln!(
                "{unverified} of {read} records were already stored under writer {writer}, too \
                 long ago to be compared, and were not stored again"
            );
        }
        if let Some(first) = first_failure {
            anyhow::bail!("{failed} of {read} records failed; first: {first}");
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Sends each line (without its newline) to `tx`; a last line without a newline counts too.
async fn read_lines(
    input: Box<dyn AsyncRead + Unpin + Send>,
    tx: mpsc::Sender<std::io::Result<Vec<u8>>>,
) {
    let mut reader = BufReader::with_capacity(1 << 20, input);
    loop {
        let mut line = Vec::new();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) => return,
            Ok(_) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                if tx.send(Ok(line)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        }
    }
}

/// `{"line":N,"chunk":I,"offset":O,"writer":"W","sequence":S}`, in this key order (W: 16 hex
/// digits); chunk and offset are null when the primary answered "already stored" without the
/// place.
fn ack_json(line: u64, ack: &AppendAck) -> String {
    let opt = |v: Option<u64>| v.map_or_else(|| "null".to_owned(), |v| v.to_string());
    format!(
        "{{\"line\":{line},\"chunk\":{},\"offset\":{},\"writer\":\"{}\",\"sequence\":{}}}",
        opt(ack.chunk.map(u64::from)),
        opt(ack.offset.map(u64::from)),
        ack.id.writer,
        ack.id.sequence
    )
}

/// `{"line":N,"chunk":null,"offset":null,"writer":"W","sequence":S,"unverified":true}`: a
/// record whose (writer, sequence) was already stored, too long ago to be compared with this
/// line.
fn unverified_json(line: u64, writer: WriterId, sequence: u64) -> String {
    format!(
        "{{\"line\":{line},\"chunk\":null,\"offset\":null,\"writer\":\"{writer}\",\"sequence\":{sequence},\"unverified\":true}}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_client::RecordId;

    // Proves: --writer takes ids in hex as cairn prints them (with or without 0x, leading zeros
    // optional) and refuses 0, garbage and more than 64 bits.
    #[test]
    fn writer_ids_parse() {
        assert_eq!(parse_writer("00000000000000ff"), Ok(WriterId(255)));
        assert_eq!(parse_writer("0xff"), Ok(WriterId(255)));
        assert_eq!(parse_writer("42"), Ok(WriterId(0x42)));
        assert_eq!(
            parse_writer(&WriterId(u64::MAX).to_string()),
            Ok(WriterId(u64::MAX))
        );
        assert!(parse_writer("0").is_err());
        assert!(parse_writer("x").is_err());
        assert!(parse_writer("1ffffffffffffffff").is_err());
    }

    #[test]
    fn ack_lines_follow_the_contract() {
        let ack = AppendAck {
            id: RecordId {
                writer: WriterId(u64::MAX),
                sequence: 3,
            },
            chunk: Some(2),
            offset: Some(cairn_client::ChunkOffset(96)),
        };
        let line = ack_json(7, &ack);
        assert_eq!(
            line,
            "{\"line\":7,\"chunk\":2,\"offset\":96,\"writer\":\"ffffffffffffffff\",\"sequence\":3}"
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["writer"].as_str(), Some("ffffffffffffffff"));
        let dup = AppendAck {
            chunk: None,
            offset: None,
            ..ack
        };
        let v: serde_json::Value = serde_json::from_str(&ack_json(1, &dup)).unwrap();
        assert!(v["chunk"].is_null() && v["offset"].is_null());
    }
}
