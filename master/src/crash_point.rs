//! Named crash points (`--test-crash-at POINT[:N]`, a test-only flag): places in the seal and
//! allocation paths where a test makes the master abort, to prove that a restarted master
//! finishes or repairs what the dead one left half done.
//!
//! A point is reached each time the code passes it; the N-th time (default the first) the
//! process writes one line naming the point to stderr and calls `std::process::abort`: no
//! unwinding, no final checkpoint, no answer to the RPC in flight, as in a crash.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

/// A place in the master's code where a test can make it crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashPoint {
    /// A seal's new version is durable in the operation log; no replica has been fenced.
    AfterVersionLogged,
    /// The fences of a seal were answered; no replica has been sealed, no seal logged.
    AfterFence,
    /// The replicas confirmed the seal; the seal is not yet in the operation log.
    BeforeSealLogged,
    /// A new chunk's allocation is logged and its secondaries' replicas exist on their
    /// chunkservers; the primary's is not created and the chunk was never handed out.
    MidAllocation,
}

impl CrashPoint {
    /// Every crash point, in the order a seal then an allocation reach them.
    pub const ALL: [CrashPoint; 4] = [
        CrashPoint::AfterVersionLogged,
        CrashPoint::AfterFence,
        CrashPoint::BeforeSealLogged,
        CrashPoint::MidAllocation,
    ];

    /// The name the flag takes.
    pub fn name(self) -> &'static str {
        match self {
            CrashPoint::AfterVersionLogged => "after-version-logged",
            CrashPoint::AfterFence => "after-fence",
            CrashPoint::BeforeSealLogged => "before-seal-logged",
            CrashPoint::MidAllocation => "mid-allocation",
        }
    }
}

impl fmt::Display for CrashPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where and when to crash: the `time`-th time (from 1) the master reaches `point`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CrashAt {
    /// The crash point.
    pub point: CrashPoint,
    /// Which pass through it aborts (1 = the first).
    pub time: u64,
}

impl FromStr for CrashAt {
    type Err = String;

    /// Parses `POINT` or `POINT:N` (N ≥ 1).
    fn from_str(s: &str) -> Result<CrashAt, String> {
        let (name, time) = match s.split_once(':') {
            Some((name, n)) => match n.parse::<u64>() {
                Ok(n) if n >= 1 => (name, n),
                _ => return Err(format!("{n:?} is not a pass number (1 or more)")),
            },
            None => (s, 1),
        };
        let point = CrashPoint::ALL
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = CrashPoint::ALL.iter().map(|p| p.name()).collect();
                format!("unknown crash point {name:?}; one of {}", names.join(", "))
            })?;
        Ok(CrashAt { point, time })
    }
}

/// Counts passes through the crash points and aborts at the configured one.
#[derive(Debug, Default)]
pub(crate) struct CrashPoints {
    at: Option<CrashAt>,
    passes: AtomicU64,
}

impl CrashPoints {
    /// Crash points that abort at `at` (never, if `None`).
    pub(crate) fn new(at: Option<CrashAt>) -> CrashPoints {
        CrashPoints {
            at,
            passes: AtomicU64::new(0),
        }
    }

    /// The master passes `point`: aborts the process if this is the configured pass.
    pub(crate) fn reached(&self, point: CrashPoint) {
        let Some(at) = self.at else { return };
        if at.point != point {
            return;
        }
        let pass = self.passes.fetch_add(1, Ordering::SeqCst) + 1;
        if pass == at.time {
            eprintln!("cairn master: TEST CRASH POINT {point} reached (pass {pass}); aborting");
            std::process::abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves: every point parses by its name, with and without a pass number; a bad name or
    // pass number is refused with a message naming the choices; a point not configured, or
    // passed fewer times than asked, does not abort (this test process survives).
    #[test]
    fn points_parse_and_only_the_configured_pass_aborts() {
        for p in CrashPoint::ALL {
            let at: CrashAt = p.name().parse().unwrap();
            assert_eq!((at.point, at.time), (p, 1));
            let at: CrashAt = format!("{p}:3").parse().unwrap();
            assert_eq!((at.point, at.time), (p, 3));
        }
        let e = "mid-seal".parse::<CrashAt>().unwrap_err();
        assert!(e.contains("after-fence"), "{e}");
        assert!("after-fence:0".parse::<CrashAt>().is_err());
        assert!("after-fence:x".parse::<CrashAt>().is_err());
        let points = CrashPoints::new(Some("after-fence:3".parse().unwrap()));
        for _ in 0..5 {
            points.reached(CrashPoint::MidAllocation);
        }
        points.reached(CrashPoint::AfterFence);
        points.reached(CrashPoint::AfterFence);
        assert_eq!(points.passes.load(Ordering::SeqCst), 2);
        CrashPoints::new(None).reached(CrashPoint::AfterFence);
    }
}
