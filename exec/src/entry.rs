//! [`main`] and [`main_with_snapshots`]: the entry points of a hosted service's binary (one
//! code path; the second also hands the worker the service's [`Snapshot`]). The same binary
//! runs as worker, replica, front door, local cluster or plain server, chosen by its arguments.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use tonic::server::NamedService;

use crate::call::HostedService;
use crate::front_door::{FrontDoor, FrontDoorService};
use crate::replica::{ReplicaConfig, SNAPSHOT_EVERY_DEFAULT};
use crate::service_logs::ServiceLogs;
use crate::snapshot::Snapshot;
use crate::worker::Hosted;

/// The roles of a service binary.
#[derive(Parser, Debug)]
#[command(about = "A service hosted by Cairn's execution layer")]
struct Cli {
    #[command(subcommand)]
    role: Role,
}

#[derive(Subcommand, Debug)]
enum Role {
    /// Run requests from stdin, one at a time, answering on stdout (started by a replica).
    #[command(hide = true)]
    Worker,
    /// Serve the service directly with plain tonic: in memory, no replication, no vote.
    ServeDirect {
        /// Address to listen on.
        #[arg(long)]
        listen: String,
    },
    /// Serve every method of the service to plain gRPC clients: log each call, answer what
    /// f+1 replicas agree on. Prints `front door ADDR` once it serves.
    FrontDoor {
        /// The Cairn master's address.
        #[arg(long)]
        master: String,
        /// The service (its logs are /exec/SERVICE/…; create them with `cairn exec create`).
        #[arg(long)]
        service: String,
        /// Address to listen on.
        #[arg(long)]
        listen: String,
        #[command(flatten)]
        deadlines: DeadlineArgs,
        #[command(flatten)]
        http: HttpArg,
    },
    /// A whole service on this machine: a master on PORT, 3 chunkservers on PORT+1..PORT+3,
    /// the service's logs, 3 replicas (each with its worker process) and a front door on
    /// 127.0.0.1:PORT+10. Prints `front door ADDR` once it serves; Ctrl-C stops everything.
    Local {
        /// Data directory (DATA/master, DATA/cs1, …).
        #[arg(long)]
        data: std::path::PathBuf,
        /// The master's port.
        #[arg(long, default_value_t = 7000)]
        port: u16,
        /// The service's name. Default: this program's name without a `cairn-` prefix.
        #[arg(long)]
        service: Option<String>,
        /// Each replica takes a snapshot after every this many inputs (0: never; only for a
        /// service hosted with snapshots).
        #[arg(long, default_value_t = SNAPSHOT_EVERY_DEFAULT)]
        snapshot_every: u64,
        #[command(flatten)]
        deadlines: DeadlineArgs,
        #[command(flatten)]
        http: HttpArg,
    },
    /// Run business replica INDEX: execute the service's inputs in log order in a worker
    /// process and append each outcome to its own output log.
    Replica {
        /// The Cairn master's address.
        #[arg(long)]
        master: String,
        /// The service.
        #[arg(long)]
        service: String,
        /// This replica's index, 0..n.
        #[arg(long)]
        index: u32,
        /// The chunkserver beside this replica, where its output log lives (RF 1). Default:
        /// the placement `cairn exec create` chose, the INDEX-th live chunkserver in address
        /// order.
        #[arg(long)]
        chunkserver: Option<String>,
        /// Take a snapshot of the service's state after every this many inputs, so that a
        /// restart restores it and re-runs only the inputs after it (0: never; a service
        /// without snapshots takes none whatever this says).
        #[arg(long, default_value_t = SNAPSHOT_EVERY_DEFAULT)]
        snapshot_every: u64,
        /// Dissents in a row (outputs the vote disagreed with) after which the replica reports
        /// itself faulty and rebuilds its state from the input log.
        #[arg(long, default_value_t = crate::replica::FAULTY_AFTER_DEFAULT)]
        faulty_after: u64,
        /// Test only (a build with the feature `test-faults`): flip a bit in this share
        /// (0.0-1.0) of the outputs.
        #[arg(long, hide = true, default_value_t = 0.0)]
        test_corrupt_outputs: f64,
        #[command(flatten)]
        http: HttpArg,
    },
}

/// `--http`: where a role serves its metrics.
#[derive(clap::Args, Debug, Clone, Default)]
struct HttpArg {
    /// Serve Prometheus metrics on HOST:PORT at /metrics (under `local`, every role's on one
    /// endpoint, and the master's status page at /). Off by default.
    #[arg(long, env = "CAIRN_HTTP", value_name = "HOST:PORT")]
    http: Option<String>,
}

impl HttpArg {
    /// Binds `--http`, if given, and serves `metrics` there on a task of the current runtime.
    async fn start(&self, metrics: &cairn_metrics::Metrics) -> anyhow::Result<()> {
        if let Some(addr) = &self.http {
            cairn_metrics::serve_on(addr, metrics.clone()).await?;
        }
        Ok(())
    }
}

/// The front door's deadline flags.
#[derive(clap::Args, Debug)]
struct DeadlineArgs {
    /// A handler's deadline in ms, for methods without their own: a replica kills a handler
    /// that runs longer (TIMEOUT), and the front door answers DEADLINE_EXCEEDED (PENDING) after
    /// twice this. A caller's grpc-timeout can only shorten it.
    #[arg(long, default_value_t = crate::deadline::DEFAULT_DEADLINE.as_millis() as u64)]
    deadline_ms: u64,
    /// One method's deadline, METHOD=MS (e.g. /bank.v1.Bank/Transfer=200); repeatable.
    #[arg(long = "method-deadline", value_name = "METHOD=MS")]
    method_deadlines: Vec<String>,
}

impl DeadlineArgs {
    fn deadlines(&self) -> anyhow::Result<crate::deadline::Deadlines> {
        crate::deadline::Deadlines::parse(self.deadline_ms, &self.method_deadlines)
            .map_err(anyhow::Error::msg)
    }
}

/// Runs the service binary: parses the arguments and runs the role they name. `factory`
/// builds a fresh service (a generated tonic server), e.g. `|| BankServer::new(Bank::default())`.
/// Its replicas rebuild their state by re-running every input; see [`main_with_snapshots`].
pub fn main<S, F>(factory: F) -> ExitCode
where
    S: HostedService + Sync,
    F: Fn() -> S + Send + Sync + Clone + 'static,
{
    run_roles(move || Hosted::without_snapshots(factory()))
}

/// [`main`] for a service with snapshots: `factory` builds a fresh service and the handle that
/// snapshots and restores its state, e.g.
/// `|| { let bank = Bank::default(); (BankServer::new(bank.clone()), bank) }`. Its replicas take
/// a snapshot every `--snapshot-every` inputs and, on restart, restore the newest one and
/// re-run only the inputs after it.
pub fn main_with_snapshots<S, T, F>(factory: F) -> ExitCode
where
    S: HostedService + Sync,
    T: Snapshot,
    F: Fn() -> (S, T) + Send + Sync + Clone + 'static,
{
    run_roles(move || {
        let (service, snapshots) = factory();
        Hosted::with_snapshots(service, snapshots)
    })
}

/// The one code path of [`main`] and [`main_with_snapshots`].
fn run_roles<S, F>(factory: F) -> ExitCode
where
    S: HostedService + Sync,
    F: Fn() -> Hosted<S> + Send + Sync + Clone + 'static,
{
    let cli = Cli::parse();
    // A cluster on TLS: this process's channels to it present the cluster's client certificate,
    // or a token (CAIRN_TOKEN) over TLS.
    let token = std::env::var("CAIRN_TOKEN").ok().filter(|t| !t.is_empty());
    if let Some(token) = &token
        && let Err(e) = cairn_proto::net::auth::use_token(token)
    {
        eprintln!("error: CAIRN_TOKEN: {e}");
        return ExitCode::FAILURE;
    }
    if let Some(dir) = std::env::var_os("CAIRN_TLS_DIR") {
        match cairn_proto::net::tls::TlsFiles::load_client(
            std::path::Path::new(&dir),
            token.is_some(),
        ) {
            Ok(files) => cairn_proto::net::tls::use_tls(files),
            Err(e) => {
                eprintln!("error: CAIRN_TLS_DIR: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let result = match cli.role {
        Role::Worker => crate::worker::run(factory).map_err(anyhow::Error::from),
        Role::ServeDirect { listen } => serve_direct(factory().service, &listen),
        Role::FrontDoor {
            master,
            service,
            listen,
            deadlines,
            http,
        } => deadlines
            .deadlines()
            .and_then(|d| front_door::<S>(&master, &service, &listen, d, &http)),
        Role::Replica {
            master,
            service,
            index,
            chunkserver,
            snapshot_every,
            faulty_after,
            test_corrupt_outputs,
            http,
        } => replica(
            &master,
            &service,
            index,
            chunkserver,
            (snapshot_every, faulty_after, test_corrupt_outputs),
            &http,
        ),
        Role::Local {
            data,
            port,
            service,
            snapshot_every,
            deadlines,
            http,
        } => deadlines
            .deadlines()
            .and_then(|d| local::<S>(data, port, service, snapshot_every, d, &http)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `serve-direct`: the service on plain tonic until Ctrl-C; prints `listening ADDR` once bound.
fn serve_direct<S: HostedService + Sync>(service: S, listen: &str) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let rt = tokio::runtime::Runtime::new().context("start the runtime")?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listen on {listen}"))?;
        println!("listening {}", listener.local_addr()?);
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(
                accepted_without_delay(listener),
                cairn_local::shutdown_signal(),
            )
            .await
            .context("serve")
    })
}

/// Installs the tracing subscriber: `RUST_LOG` filter (default `info`), to stderr (a worker's
/// stdout is its pipe).
pub(crate) fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// A runtime with two worker threads (the machines this runs on share few cores).
pub(crate) fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

/// `front-door`.
fn front_door<S: NamedService + 'static>(
    master: &str,
    service: &str,
    listen: &str,
    deadlines: crate::deadline::Deadlines,
    http: &HttpArg,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    init_tracing();
    let logs = ServiceLogs::new(service)?;
    runtime()?.block_on(async {
        let client = cairn_client::Client::connect(master).await?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listen on {listen}"))?;
        let addr = listener.local_addr()?;
        let metrics = cairn_metrics::Metrics::new();
        http.start(&metrics).await?;
        let door = FrontDoor::start(&client, logs, deadlines).await?;
        door.register_metrics(&metrics);
        println!("front door {addr}");
        serve_front_door::<S>(door, listener, cairn_local::shutdown_signal()).await
    })
}

/// The connections `listener` accepts, with Nagle's algorithm off (`TCP_NODELAY`). A server
/// builder's `tcp_nodelay` applies only to listeners it binds itself, not to an incoming stream
/// handed to it: without this, small answers waited for the caller's delayed ACK (~40 ms).
fn accepted_without_delay(
    listener: tokio::net::TcpListener,
) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// Serves `door` under `S`'s service name on `listener` until `shutdown`.
pub(crate) async fn serve_front_door<S: NamedService + 'static>(
    door: std::sync::Arc<FrontDoor>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    cairn_proto::net::server()
        .add_service(FrontDoorService::<S>::new(door))
        .serve_with_incoming_shutdown(accepted_without_delay(listener), shutdown)
        .await
        .context("serve the front door")
}

/// `replica`.
fn replica(
    master: &str,
    service: &str,
    index: u32,
    chunkserver: Option<String>,
    (snapshot_every, faulty_after, test_corrupt_outputs): (u64, u64, f64),
    http: &HttpArg,
) -> anyhow::Result<()> {
    init_tracing();
    if test_corrupt_outputs != 0.0
        && (!cfg!(feature = "test-faults") || !(0.0..=1.0).contains(&test_corrupt_outputs))
    {
        anyhow::bail!(
            "--test-corrupt-outputs takes 0.0-1.0, and only in a build with the feature test-faults"
        );
    }
    let metrics = cairn_metrics::Metrics::new();
    let config = ReplicaConfig {
        master: master.to_owned(),
        logs: ServiceLogs::new(service)?,
        index,
        chunkserver,
        worker_program: std::env::current_exe()?,
        worker_args: vec!["worker".to_owned()],
        snapshot_every,
        faulty_after,
        test_corrupt_outputs,
        metrics: crate::metrics::ReplicaMetrics::register(&metrics, service, index),
    };
    runtime()?.block_on(async {
        http.start(&metrics).await?;
        crate::replica::run(config, cairn_local::shutdown_signal()).await
    })
}

/// Replicas `local` runs.
const LOCAL_REPLICAS: u32 = 3;
/// The front door's port under `local`: the master's port plus this.
const LOCAL_FRONT_DOOR_OFFSET: u16 = 10;

/// `local`.
fn local<S: NamedService + 'static>(
    data: std::path::PathBuf,
    port: u16,
    service: Option<String>,
    snapshot_every: u64,
    deadlines: crate::deadline::Deadlines,
    http: &HttpArg,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    init_tracing();
    let service = match service {
        Some(s) => s,
        None => default_service_name()?,
    };
    let logs = ServiceLogs::new(&service)?;
    let front_door_port = port
        .checked_add(LOCAL_FRONT_DOOR_OFFSET)
        .context("--port leaves no room for the front door")?;
    let config = cairn_local::LocalConfig {
        data,
        chunkservers: 3,
        port,
        adopt_cluster_id: false,
    };
    runtime()?.block_on(async {
        let metrics = cairn_metrics::Metrics::new();
        http.start(&metrics).await?;
        let cluster =
            cairn_local::LocalCluster::start_with_metrics(&config, metrics.clone()).await?;
        let client = cairn_client::Client::connect(&cluster.master_addr).await?;
        // The chunkservers register within a heartbeat or two.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            match logs.create(&client, LOCAL_REPLICAS).await {
                Ok(_) => break,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(error = %format!("{e:#}"), "service logs not created yet");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e),
            }
        }
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = move || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|stop| *stop).await;
            }
        };
        let mut tasks = tokio::task::JoinSet::new();
        for index in 0..LOCAL_REPLICAS {
            let config = ReplicaConfig {
                master: cluster.master_addr.clone(),
                logs: logs.clone(),
                index,
                chunkserver: None,
                worker_program: std::env::current_exe()?,
                worker_args: vec!["worker".to_owned()],
                snapshot_every,
                faulty_after: crate::replica::FAULTY_AFTER_DEFAULT,
                test_corrupt_outputs: 0.0,
                metrics: crate::metrics::ReplicaMetrics::register(
                    &metrics,
                    logs.service(),
                    index,
                ),
            };
            let stopped = stopped.clone();
            tasks.spawn(async move {
                // A replica that stops on an error is restarted: it resumes after its last
                // output, rebuilding its worker's state.
                loop {
                    let mut stop = Box::pin(stopped());
                    let run = crate::replica::run(config.clone(), stopped());
                    tokio::select! {
                        result = run => {
                            if result.is_ok() {
                                return;
                            }
                        }
                        _ = &mut stop => return,
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                        _ = &mut stop => return,
                    }
                }
            });
        }
        let listen = format!("127.0.0.1:{front_door_port}");
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .with_context(|| format!("listen on {listen}"))?;
        let door = FrontDoor::start(&client, logs.clone(), deadlines).await?;
        door.register_metrics(&metrics);
        println!("front door {}", listener.local_addr()?);
        eprintln!(
            "{} local: master {}, chunkservers {}, {LOCAL_REPLICAS} replicas, front door {listen}; Ctrl-C stops",
            logs.service(),
            cluster.master_addr,
            cluster.chunkserver_addrs.join(" "),
        );
        let served = serve_front_door::<S>(door, listener, cairn_local::shutdown_signal()).await;
        let _ = stop_tx.send(true);
        while tasks.join_next().await.is_some() {}
        let stopped = cluster.run_until(std::future::ready(())).await;
        served.and(stopped)
    })
}

/// This program's file name without a `cairn-` prefix (`cairn-bank` → `bank`).
fn default_service_name() -> anyhow::Result<String> {
    let exe = std::env::current_exe()?;
    let name = exe.file_stem().and_then(|n| n.to_str()).unwrap_or_default();
    Ok(name.strip_prefix("cairn-").unwrap_or(name).to_owned())
}
