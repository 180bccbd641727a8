//! `cairn bench --log LOG …`: append and replay throughput and append latency against a
//! running cluster, through the client library as any application uses it.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::{BufMut, Bytes, BytesMut};
use cairn_client::{Error, LogOptions, ReplayEvent, ReplayOptions};
use cairn_record::limits::CHUNK_BYTES_DEFAULT;
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde_json::json;

use crate::cluster::{self, MasterArg, parse_bytes};

/// Flags of the cluster bench (`cairn bench` without a subcommand).
#[derive(clap::Args, Debug)]
pub(crate) struct ClusterArgs {
    /// The log to append to (created if missing).
    #[arg(long)]
    log: Option<String>,
    /// Records to append.
    #[arg(long, default_value_t = 100_000)]
    records: u64,
    /// Payload bytes per record (suffixes as in `create`).
    #[arg(long, value_parser = parse_bytes, default_value = "1024")]
    size: u64,
    /// Appends in flight at once (one appender, C unacknowledged records).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Chunk size of the log if the bench creates it.
    #[arg(long, value_parser = parse_bytes, default_value_t = CHUNK_BYTES_DEFAULT)]
    chunk_size: u64,
    /// Replicas per chunk if the bench creates the log (default: the master's).
    #[arg(long)]
    replication: Option<u32>,
    /// Skip the replay pass.
    #[arg(long)]
    no_replay: bool,
    /// Print one JSON object: records_per_sec, mb_per_sec, fsyncs, p50_us, p99_us, p999_us, max_us,
    /// replay_records_per_sec, replay_mb_per_sec (and the run's parameters).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    master: MasterArg,
}

/// Runs the cluster bench.
pub(crate) fn run(args: &ClusterArgs) -> anyhow::Result<ExitCode> {
    let log = args.log.clone().context(
        "`cairn bench` needs --log LOG (or use `cairn bench store …` for the store alone)",
    )?;
    anyhow::ensure!(args.concurrency >= 1, "--concurrency must be at least 1");
    anyhow::ensure!(args.records >= 1, "--records must be at least 1");
    cluster::run(async move {
        let client = cluster::connect(&args.master).await?;
        let options = LogOptions::default()
            .with_replication(args.replication.unwrap_or(0))
            .with_min_replicas(0)
            .with_chunk_bytes(args.chunk_size);
        match client.create_log(&log, options).await {
            Ok(_) | Err(Error::LogExists { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let appender = client.appender(&log).await?;
        anyhow::ensure!(
            args.size as usize <= appender.payload_bytes_max(),
            "--size {} exceeds this log's record limit of {} bytes",
            args.size,
            appender.payload_bytes_max()
        );
        let progress = progress_bar(args.records, "append");

        // Every record is the same template with its number in front, so payloads differ.
        let template = vec![b'x'; args.size as usize];
        let payload = |i: u64| {
            let mut p = BytesMut::with_capacity(template.len());
            p.put_slice(&template);
            let n = i.to_le_bytes();
            let k = n.len().min(p.len());
            p[..k].copy_from_slice(&n[..k]);
            p.freeze()
        };
        let mut latencies_us: Vec<u32> = Vec::with_capacity(args.records as usize);
        let mut in_flight = FuturesUnordered::new();
        let started = Instant::now();
        let mut sent = 0u64;
        while sent < args.records || !in_flight.is_empty() {
            while sent < args.records && in_flight.len() < args.concurrency {
                let p: Bytes = payload(sent);
                let t = Instant::now();
                let ack = appender.append(p);
                in_flight.push(async move { (ack.await, t.elapsed()) });
                sent += 1;
            }
            if let Some((ack, latency)) = in_flight.next().await {
                ack.context("append failed")?;
                latencies_us.push(micros(latency));
                if let Some(p) = &progress {
                    p.inc(1);
                }
            }
        }
        let append_secs = started.elapsed().as_secs_f64();
        appender.close().await?;
        if let Some(p) = &progress {
            p.finish_and_clear();
        }
        latencies_us.sort_unstable();

        let (mut replay_records, mut replay_bytes, mut replay_secs) = (0u64, 0u64, 0.0f64);
        if !args.no_replay {
            let progress = progress_bar(sent, "replay");
            let started = Instant::now();
            let mut replay = client.replay(&log, ReplayOptions::default()).await?;
            while let Some(event) = replay.next().await {
                if let ReplayEvent::Record { payload, .. } = event? {
                    replay_records += 1;
                    replay_bytes += payload.len() as u64;
                    if let Some(p) = &progress {
                        p.inc(1);
                    }
                }
            }
            replay_secs = started.elapsed().as_secs_f64();
            if let Some(p) = &progress {
                p.finish_and_clear();
            }
        }

        let records = args.records as f64;
        let rate = |n: f64, secs: f64| if secs > 0.0 { n / secs } else { 0.0 };
        let out = json!({
            "log": log,
            "records": args.records,
            "size": args.size,
            "concurrency": args.concurrency,
            "elapsed_s": append_secs,
            "records_per_sec": rate(records, append_secs),
            "mb_per_sec": rate(records * args.size as f64 / 1e6, append_secs),
            // The cluster does not report its fsyncs to clients.
            "fsyncs": serde_json::Value::Null,
            "p50_us": percentile(&latencies_us, 0.50),
            "p99_us": percentile(&latencies_us, 0.99),
            "p999_us": percentile(&latencies_us, 0.999),
            "max_us": latencies_us.last().copied().unwrap_or(0),
            "replay_records": replay_records,
            "replay_elapsed_s": replay_secs,
            "replay_records_per_sec": rate(replay_records as f64, replay_secs),
            "replay_mb_per_sec": rate(replay_bytes as f64 / 1e6, replay_secs),
        });
        if args.json {
            println!("{out}");
        } else {
            let f = |k: &str| out[k].as_f64().unwrap_or(0.0);
            println!(
                "{} records of {} B into {log}, {} in flight, in {append_secs:.2} s",
                args.records, args.size, args.concurrency
            );
            println!(
                "  append: {:.0} records/s, {:.1} MB/s; latency p50 {} us, p99 {} us, p999 {} us",
                f("records_per_sec"),
                f("mb_per_sec"),
                out["p50_us"],
                out["p99_us"],
                out["p999_us"]
            );
            if !args.no_replay {
                println!(
                    "  replay: {replay_records} records in {replay_secs:.2} s, {:.0} records/s, {:.1} MB/s",
                    f("replay_records_per_sec"),
                    f("replay_mb_per_sec")
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn micros(d: Duration) -> u32 {
    d.as_micros().min(u32::MAX as u128) as u32
}

/// The `q` quantile of sorted samples (0 when empty).
fn percentile(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// A progress bar on stderr, only when stderr is a terminal.
fn progress_bar(len: u64, what: &'static str) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec})",
        )
        .expect("the template is valid"),
    );
    bar.set_prefix(what);
    Some(bar)
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_pick_the_ceiling_rank() {
        let v: Vec<u32> = (1..=1000).collect();
        assert_eq!(percentile(&v, 0.5), 500);
        assert_eq!(percentile(&v, 0.99), 990);
        assert_eq!(percentile(&v, 0.999), 999);
        assert_eq!(percentile(&[7], 0.999), 7);
        assert_eq!(percentile(&[], 0.5), 0);
    }
}
