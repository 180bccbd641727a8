//! The nemesis: a seeded fault schedule over the simulated cluster, applied between simulation
//! steps, and healed at a fixed time.
//!
//! Faults, each lasting a random while:
//! - **crash** of a chunkserver (its disk loses what was not synced; sometimes a torn tail of the
//!   unsynced writes survives) or of the master (its disk loses what was not synced), then a
//!   restart;
//! - **power cut**: every chunkserver and the master at once;
//! - **pause** of any host (its links held: nothing in or out, delivered late on release, as a
//!   stopped process sees);
//! - **cut** (partition), **slow** (a link's latency up to 400 ms, messages on different
//!   connections reordered) and **flaky** (a link that breaks at random, dropping what was in
//!   flight) between any two hosts;
//! - **disk full** (ENOSPC after a few more KiB) on any chunkserver, cleared later;
//! - on one chunkserver per run, the *damaged* one, the faults that destroy replicas: EIO on an
//!   fsync, EIO on reads of one replica, a flipped byte in a replica, a write torn by a power
//!   cut, and (once) a wiped disk. Confining them to one chunkserver keeps at least two intact
//!   copies of every acknowledged record, so a loss the checker finds is Cairn's fault.
//!
//! At most two hosts are down or paused at once, and one link fault is active at a time.

use std::path::PathBuf;
use std::time::Duration;

use cairn_chunkserver::FaultyDisk;
use cairn_record::SplitMix64;

use crate::{CLIENT, MASTER_HOST, READER, SimConfig, chunkserver_name};

/// A fault in force, healed at `until`.
#[derive(Clone, Debug)]
enum Active {
    /// A host crashed; restarted at the end.
    Down(String),
    /// A host's links held.
    Paused(String),
    /// Link cut.
    Cut(String, String),
    /// Link slowed.
    Slow(String, String),
    /// Link breaking at random.
    Flaky(String, String),
    /// Chunkserver disk full.
    Full(usize),
    /// Reads of one replica file fail.
    BadReads(usize),
    /// The damaged chunkserver's next write is torn and its disk dead; at the end, the power cut
    /// that tore it (a crash), then a restart.
    Tearing(usize),
}

/// The seeded fault schedule of one run.
pub(crate) struct Nemesis {
    rng: SplitMix64,
    config: SimConfig,
    disks: Vec<FaultyDisk>,
    data_dirs: Vec<PathBuf>,
    /// The master's disk (operation log, checkpoint, cluster id).
    master_disk: FaultyDisk,
    /// The one chunkserver that may lose replicas.
    damaged: usize,
    wiped: bool,
    active: Vec<(Active, Duration)>,
    next: Duration,
    /// Every fault and heal, with its simulated time.
    pub(crate) log: Vec<String>,
}

/// A file's name without its (per-run temporary) directory, for the fault log.
fn file_name(path: &std::path::Path) -> String {
    path.file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

/// Link latency outside a "slow" fault.
const NORMAL_LATENCY: Duration = Duration::from_millis(2);

impl Nemesis {
    pub(crate) fn new(
        config: SimConfig,
        disks: Vec<FaultyDisk>,
        data_dirs: Vec<PathBuf>,
        master_disk: FaultyDisk,
    ) -> Nemesis {
        let mut rng = SplitMix64::new(config.seed ^ 0xfa17);
        let damaged = rng.below(config.chunkservers as u64) as usize;
        let next = Duration::from_millis(500 + rng.below(1_000));
        Nemesis {
            rng,
            config,
            disks,
            data_dirs,
            master_disk,
            damaged,
            wiped: false,
            active: Vec::new(),
            next,
            log: Vec::new(),
        }
    }

    fn hosts(&self) -> Vec<String> {
        let mut hosts: Vec<String> = (0..self.config.chunkservers)
            .map(chunkserver_name)
            .collect();
        hosts.extend([MASTER_HOST, CLIENT, READER].map(String::from));
        hosts
    }

    fn pick<T: Clone>(&mut self, from: &[T]) -> T {
        from[self.rng.below(from.len() as u64) as usize].clone()
    }

    fn pair(&mut self) -> (String, String) {
        let hosts = self.hosts();
        let a = self.rng.below(hosts.len() as u64) as usize;
        let mut b = self.rng.below(hosts.len() as u64 - 1) as usize;
        if b >= a {
            b += 1;
        }
        (hosts[a].clone(), hosts[b].clone())
    }

    fn busy(&self, host: &str) -> bool {
        self.active.iter().any(|(a, _)| match a {
            Active::Down(h) | Active::Paused(h) => h == host,
            Active::Tearing(i) => chunkserver_name(*i) == host,
            _ => false,
        })
    }

    fn stopped(&self) -> usize {
        self.active
            .iter()
            .filter(|(a, _)| matches!(a, Active::Down(_) | Active::Paused(_) | Active::Tearing(_)))
            .count()
    }

    fn link_fault(&self) -> bool {
        self.active
            .iter()
            .any(|(a, _)| matches!(a, Active::Cut(..) | Active::Slow(..) | Active::Flaky(..)))
    }

    fn until(&mut self, now: Duration, min_ms: u64, spread_ms: u64) -> Duration {
        now + Duration::from_millis(min_ms + self.rng.below(spread_ms))
    }

    /// Called between simulation steps: heals what is due, and injects the next fault when it is
    /// time (never after the heal time, when everything is healed).
    pub(crate) fn step(&mut self, sim: &mut turmoil::Sim<'_>, now: Duration) {
        let heal_at = self.config.heal_at();
        let due: Vec<Active> = self
            .active
            .iter()
            .filter(|(_, until)| now >= *until || now >= heal_at)
            .map(|(a, _)| a.clone())
            .collect();
        self.active
            .retain(|(_, until)| now < *until && now < heal_at);
        for a in due {
            self.heal(sim, now, a);
        }
        if !self.config.faults || now >= heal_at || now < self.next {
            return;
        }
        self.next = self.until(now, 200, 1_500);
        self.inject(sim, now);
    }

    fn heal(&mut self, sim: &mut turmoil::Sim<'_>, now: Duration, fault: Active) {
        let what = match fault {
            Active::Down(h) => {
                sim.bounce(h.as_str());
                format!("restart {h}")
            }
            Active::Paused(h) => {
                for other in self.hosts().iter().filter(|o| **o != h) {
                    sim.release(h.as_str(), other.as_str());
                }
                format!("resume {h}")
            }
            Active::Cut(a, b) => {
                sim.repair(a.as_str(), b.as_str());
                format!("heal {a}-{b}")
            }
            Active::Slow(a, b) => {
                sim.set_link_max_message_latency(a.as_str(), b.as_str(), NORMAL_LATENCY);
                format!("speed up {a}-{b}")
            }
            Active::Flaky(a, b) => {
                sim.set_link_fail_rate(a.as_str(), b.as_str(), 0.0);
                sim.repair(a.as_str(), b.as_str());
                format!("steady {a}-{b}")
            }
            Active::Full(i) => {
                self.disks[i].clear_enospc();
                format!("free the disk of {}", chunkserver_name(i))
            }
            Active::BadReads(i) => {
                self.disks[i].heal_reads();
                format!("heal reads on {}", chunkserver_name(i))
            }
            Active::Tearing(i) => {
                let what = self.crash_chunkserver(sim, i);
                let until = self.until(now, 300, 2_000);
                self.active.push((Active::Down(chunkserver_name(i)), until));
                what
            }
        };
        self.log.push(format!("{now:?} {what}"));
    }

    /// Crashes chunkserver `i`: its disk first (the store's last writes during the shutdown
    /// cannot land), keeping a torn part of the unsynced writes one time in three.
    fn crash_chunkserver(&mut self, sim: &mut turmoil::Sim<'_>, i: usize) -> String {
        let keep = if self.rng.below(3) == 0 {
            self.rng.below(64 << 10) as usize
        } else {
            0
        };
        self.disks[i].crash(keep);
        let host = chunkserver_name(i);
        sim.crash(host.as_str());
        format!("crash {host} (unsynced writes lost, {keep} bytes of them kept)")
    }

    /// A sealed-looking replica file of the damaged chunkserver (the lowest-numbered data file
    /// picked at random), if it has any.
    fn damaged_replica(&mut self) -> Option<(PathBuf, u64)> {
        let disk = self.disks[self.damaged].clone();
        let files: Vec<PathBuf> = disk
            .paths()
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "chunk"))
            .collect();
        if files.is_empty() {
            return None;
        }
        let path = self.pick(&files);
        let len = disk.contents(&path)?.len() as u64;
        Some((path, len))
    }

    fn inject(&mut self, sim: &mut turmoil::Sim<'_>, now: Duration) {
        let chunkservers = self.config.chunkservers;
        let d = self.damaged;
        let what = match self.rng.below(14) {
            0 | 1 if self.stopped() < 2 => {
                let i = self.rng.below(chunkservers as u64) as usize;
                let host = chunkserver_name(i);
                if self.busy(&host) {
                    return;
                }
                let what = self.crash_chunkserver(sim, i);
                let until = self.until(now, 500, 3_000);
                self.active.push((Active::Down(host), until));
                what
            }
            2 if self.stopped() < 2 && !self.busy(MASTER_HOST) => {
                // The disk first, as for a chunkserver: nothing unsynced survives.
                self.master_disk.crash(0);
                sim.crash(MASTER_HOST);
                let until = self.until(now, 200, 1_500);
                self.active.push((Active::Down(MASTER_HOST.into()), until));
                "crash master (unsynced writes lost)".into()
            }
            3 if self.stopped() == 0 && self.rng.below(4) == 0 => {
                let mut what = vec![];
                for i in 0..chunkservers {
                    what.push(self.crash_chunkserver(sim, i));
                    let until = self.until(now, 300, 1_500);
                    self.active.push((Active::Down(chunkserver_name(i)), until));
                }
                self.master_disk.crash(0);
                sim.crash(MASTER_HOST);
                let until = self.until(now, 300, 1_500);
                self.active.push((Active::Down(MASTER_HOST.into()), until));
                format!(
                    "power cut: crash master (unsynced writes lost); {}",
                    what.join("; ")
                )
            }
            4 | 5 if self.stopped() < 2 => {
                let hosts = self.hosts();
                let host = self.pick(&hosts);
                if self.busy(&host) {
                    return;
                }
                for other in hosts.iter().filter(|o| **o != host) {
                    sim.hold(host.as_str(), other.as_str());
                }
                let until = self.until(now, 300, 4_000);
                self.active.push((Active::Paused(host.clone()), until));
                format!("pause {host}")
            }
            6 | 7 if !self.link_fault() => {
                let (a, b) = self.pair();
                sim.partition(a.as_str(), b.as_str());
                let until = self.until(now, 200, 2_000);
                self.active.push((Active::Cut(a.clone(), b.clone()), until));
                format!("cut {a}-{b}")
            }
            8 if !self.link_fault() => {
                let (a, b) = self.pair();
                let max = Duration::from_millis(20 + self.rng.below(380));
                sim.set_link_max_message_latency(a.as_str(), b.as_str(), max);
                let until = self.until(now, 500, 3_000);
                self.active
                    .push((Active::Slow(a.clone(), b.clone()), until));
                format!("slow {a}-{b} (latency up to {max:?})")
            }
            9 if !self.link_fault() => {
                let (a, b) = self.pair();
                sim.set_link_fail_rate(a.as_str(), b.as_str(), 0.01);
                let until = self.until(now, 300, 1_500);
                self.active
                    .push((Active::Flaky(a.clone(), b.clone()), until));
                format!("flaky {a}-{b}")
            }
            10 => {
                let i = self.rng.below(chunkservers as u64) as usize;
                if self
                    .active
                    .iter()
                    .any(|(a, _)| matches!(a, Active::Full(j) if *j == i))
                {
                    return;
                }
                let budget = self.rng.below(64 << 10);
                self.disks[i].enospc_after(budget);
                let until = self.until(now, 500, 3_000);
                self.active.push((Active::Full(i), until));
                format!(
                    "disk of {} full after {budget} more bytes",
                    chunkserver_name(i)
                )
            }
            11 => match self.rng.below(3) {
                0 => {
                    self.disks[d].fail_next_sync();
                    format!("EIO on the next fsync of {}", chunkserver_name(d))
                }
                1 => {
                    let Some((path, len)) = self.damaged_replica() else {
                        return;
                    };
                    if len == 0 {
                        return;
                    }
                    let offset = self.rng.below(len);
                    self.disks[d].flip_byte(&path, offset);
                    format!(
                        "flip byte {offset} of {} on {}",
                        file_name(&path),
                        chunkserver_name(d)
                    )
                }
                _ => {
                    if self
                        .active
                        .iter()
                        .any(|(a, _)| matches!(a, Active::BadReads(_)))
                    {
                        return;
                    }
                    let Some((path, _)) = self.damaged_replica() else {
                        return;
                    };
                    self.disks[d].fail_reads(&path);
                    let until = self.until(now, 500, 3_000);
                    self.active.push((Active::BadReads(d), until));
                    format!(
                        "EIO on reads of {} on {}",
                        file_name(&path),
                        chunkserver_name(d)
                    )
                }
            },
            12 if self.stopped() < 2 && !self.busy(&chunkserver_name(d)) => {
                // A write torn by a power cut: the disk dies mid-write, the machine a little
                // later (healing the fault crashes it, then restarts it).
                let bytes = self.rng.below(4096) as usize;
                self.disks[d].tear_next_write(bytes);
                let until = self.until(now, 50, 500);
                self.active.push((Active::Tearing(d), until));
                format!(
                    "tear the next write of {} after {bytes} bytes",
                    chunkserver_name(d)
                )
            }
            13 if !self.wiped && self.stopped() < 2 && !self.busy(&chunkserver_name(d)) => {
                self.wiped = true;
                let host = chunkserver_name(d);
                self.disks[d].crash(0);
                self.disks[d].wipe();
                sim.crash(host.as_str());
                // The data directory on the real file system too (the cluster-id file).
                let dir = &self.data_dirs[d];
                let _ = std::fs::remove_dir_all(dir);
                std::fs::create_dir_all(dir).expect("a chunkserver directory");
                let until = self.until(now, 500, 3_000);
                self.active.push((Active::Down(host.clone()), until));
                format!("wipe {host} (disk and data directory)")
            }
            _ => return,
        };
        self.log.push(format!("{now:?} {what}"));
    }
}
