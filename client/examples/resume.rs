//! A writer that survives its own restarts. It keeps its writer id in a file (`--id-file`; a
//! random one is made and saved on the first run), and every run resumes that id with
//! `Client::resume_appender` and appends the same records, record i as `"<prefix> i"` under
//! sequence i, as a producer re-sending its input after a crash would. Records an earlier run
//! stored are not stored again: the primary acknowledges one it finds stored ("already
//! stored", place unknown) or answers that a record with its id was stored too long ago to be
//! compared (`Error::UnverifiedDuplicate`, which this writer, re-sending its own records,
//! takes as stored). Resuming also fences an older process still appending with the id.
//!
//! Against a local cluster (README, "Try it"), from the repository's root: two runs, the
//! second re-sending the first one's 20 records and adding 10; a replay that keeps every
//! stored copy then shows 30 records, each once:
//!
//! ```text
//! cargo build --release -p cairn-cli
//! ./target/release/cairn local --data /tmp/cairn-demo &
//! cargo run -p cairn-client --example resume -- /orders --id-file /tmp/orders.writer --count 20
//! cargo run -p cairn-client --example resume -- /orders --id-file /tmp/orders.writer --count 30
//! cargo run -p cairn-client --example replay -- /orders --keep-duplicates
//! ```

use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bytes::Bytes;
use cairn_client::{Client, Error, LogOptions, WriterId};
use clap::Parser;

/// Append records as a writer whose id is kept in a file, resuming it on every run.
#[derive(Parser, Debug)]
struct Args {
    /// The log's path (it starts with `/`); created if it is missing.
    log: String,
    /// The file holding the writer id (hex); made with a random id if it does not exist.
    #[arg(long)]
    id_file: PathBuf,
    /// Records to send: sequences 1 to COUNT.
    #[arg(long, default_value_t = 100)]
    count: u64,
    /// Record i's payload is "<PREFIX> i".
    #[arg(long, default_value = "record")]
    prefix: String,
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
    let writer = match read_writer_id(&args.id_file)? {
        Some(writer) => {
            println!("writer {writer} read from {}", args.id_file.display());
            writer
        }
        None => {
            let writer = new_writer_id(&args.id_file)?;
            println!("writer {writer} new, saved in {}", args.id_file.display());
            writer
        }
    };
    let client = Client::connect(&args.master).await?;
    match client.create_log(&args.log, LogOptions::default()).await {
        Ok(_) | Err(Error::LogExists { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    // The master hands out the writer's next epoch: from now on an older process appending as
    // this writer is refused (`Error::WriterFenced`). Sequences start at 1: this run re-sends
    // everything (records before `first_sequence` would be taken as acknowledged).
    let appender = client.resume_appender(&args.log, writer, 1).await?;
    let payloads = (1..=args.count).map(|i| Bytes::from(format!("{} {i}", args.prefix)));
    let acks = appender.append_all(payloads);
    let (mut stored, mut found, mut not_compared, mut failed) = (0, 0, 0, 0);
    for (i, ack) in acks.into_iter().enumerate() {
        match ack.await {
            // A place: stored by this run (the resume sealed the chunk earlier runs wrote to,
            // so a place the primary knows is in a chunk opened since).
            Ok(ack) if ack.chunk.is_some() => stored += 1,
            // Found stored already, compared with this record, not stored again.
            Ok(_) => found += 1,
            // Stored already, too long ago to compare: an earlier run's copy of this record.
            Err(Error::UnverifiedDuplicate { .. }) => not_compared += 1,
            Err(e) => {
                failed += 1;
                eprintln!("record {} failed: {e}", i + 1);
            }
        }
    }
    if let Err(e) = appender.close().await {
        eprintln!("the appender closed after a failure: {e}");
    }
    println!(
        "writer {writer}: {} records sent: {stored} stored now, {found} acknowledged as already \
         stored, {not_compared} already stored too long ago to compare (not stored again), \
         {failed} failed",
        args.count
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The writer id saved in `path`, if the file exists.
fn read_writer_id(path: &Path) -> io::Result<Option<WriterId>> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    match text.trim().parse::<WriterId>() {
        Ok(writer) if writer != WriterId::PADDING => Ok(Some(writer)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {:?} is not a writer id", path.display(), text.trim()),
        )),
    }
}

/// A random non-zero writer id, saved in `path` (durably, and whole or not at all) before any
/// record is sent: a run that stored records and crashed must find the same id next time.
fn new_writer_id(path: &Path) -> io::Result<WriterId> {
    let writer = loop {
        let id: u64 = rand::random();
        if id != 0 {
            break WriterId(id);
        }
    };
    let mut tmp = OsString::from(path.as_os_str());
    tmp.push(".tmp");
    let mut file = fs::File::create(&tmp)?;
    writeln!(file, "{writer}")?;
    file.sync_all()?;
    fs::rename(&tmp, path)?;
    Ok(writer)
}
