//! What the in-process cluster tests share: a role running on a task until stopped, and a
//! chunkserver on the in-memory network (in-memory disk, writers and blocking work inline).

use std::sync::Arc;

use cairn_proto::net::memory::MemoryNet;
use tokio::sync::oneshot;

/// A role serving on a task until [`Role::stop`].
pub(crate) struct Role {
    /// Ends the role's serving.
    pub(crate) stop: oneshot::Sender<()>,
    /// The task it serves on.
    pub(crate) task: tokio::task::JoinHandle<()>,
}

impl Role {
    /// Stops the role and waits for its task.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.expect("the role ends cleanly");
    }
}

/// Chunkserver `i` (`csI.memory:700(1+I)`) of the master(s) `master`, its replicas on an
/// in-memory disk; `dir` is created on the real file system, where it records its cluster id.
pub(crate) fn start_chunkserver(
    net: &MemoryNet,
    i: usize,
    dir: &std::path::Path,
    master: &str,
) -> Role {
    use cairn_chunkserver::store::schedule::Scheduling;
    use cairn_chunkserver::{FaultyDisk, Seams, ServerDisk};
    let address = format!("cs{i}.memory:{}", 7001 + i);
    std::fs::create_dir_all(dir).expect("the chunkserver's directory");
    let mut config = cairn_chunkserver::Config::new(dir);
    config.listen = address.clone();
    config.advertise = address.clone();
    config.master = master.to_owned();
    config.heartbeat_ms = 100;
    let incoming = net.listen(&address).incoming();
    let (stop, stopped) = oneshot::channel::<()>();
    let seams = Seams {
        connector: Arc::new(net.clone()),
        disk: ServerDisk::Memory(FaultyDisk::new()),
        writers: Scheduling::Inline,
        blocking: cairn_files::Blocking::Inline,
        metrics: Default::default(),
        tls: None,
    };
    let task = tokio::spawn(async move {
        cairn_chunkserver::serve_with(config, incoming, seams, async move {
            let _ = stopped.await;
        })
        .await
        .expect("the chunkserver serves");
    });
    Role { stop, task }
}
