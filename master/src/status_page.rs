//! The master's status page, served at `/` of its HTTP listener (`--http`): the same facts as
//! `cairn status`, as HTML that reloads itself every 2 seconds (no script).

use std::fmt::Write;
use std::sync::{Arc, Weak};

use cairn_metrics::Metrics;

use crate::chunkserver_api::ChunkserverApi;
use crate::core::status::{ChunkProblem, ClusterStatus};
use crate::office::Office;

/// Serves the status page of the core in `office` through `metrics` while the master runs.
pub(crate) fn register<C: ChunkserverApi + 'static>(metrics: &Metrics, office: &Arc<Office<C>>) {
    let office: Weak<Office<C>> = Arc::downgrade(office);
    metrics.set_status_page(move || match office.upgrade().map(|o| o.core()) {
        Some(Some(core)) => render(&core.status(), core.cluster_id()),
        Some(None) => "<!doctype html><title>Cairn master</title><meta http-equiv=\"refresh\" \
                       content=\"2\"><p>This master does not lead its group now.</p>"
            .to_owned(),
        None => {
            "<!doctype html><title>Cairn master</title><p>The master has stopped.</p>".to_owned()
        }
    });
}

/// The page for `s`.
pub(crate) fn render(s: &ClusterStatus, cluster_id: u64) -> String {
    let mut p = String::new();
    let live = s.chunkservers.iter().filter(|c| c.live).count();
    let health = if s.corrupt_total > 0 || s.under_replicated_total > 0 {
        "degraded"
    } else if live < s.chunkservers.len() {
        "a chunkserver is down"
    } else {
        "healthy"
    };
    let _ = write!(
        p,
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"2\">\
         <title>Cairn master — {health}</title><style>\
         body{{font-family:sans-serif;margin:1.5em;color:#222}}table{{border-collapse:collapse;margin-bottom:1.2em}}\
         td,th{{border:1px solid #ccc;padding:.25em .6em;text-align:left}}th{{background:#eee}}\
         .dead{{color:#b00;font-weight:bold}}.live{{color:#070}}.num{{text-align:right}}\
         </style></head><body><h1>Cairn master</h1>\
         <p>Cluster <code>{cluster_id:016x}</code> · up {} · <b>{health}</b> · {} logs · {} open and {} sealed chunks · \
         <a href=\"/metrics\">metrics</a></p>",
        human_duration(s.uptime.as_secs()),
        s.logs,
        s.open_chunks,
        s.sealed_chunks,
    );
    let _ = write!(
        p,
        "<h2>Chunkservers ({live} live of {})</h2><table><tr><th>address</th><th>state</th>\
         <th>last heartbeat</th><th>free</th><th>replicas</th></tr>",
        s.chunkservers.len()
    );
    for c in &s.chunkservers {
        let (class, state) = if c.live {
            ("live", "live")
        } else {
            ("dead", "dead")
        };
        let _ = write!(
            p,
            "<tr><td>{}</td><td class=\"{class}\">{state}</td><td class=\"num\">{:.1} s ago</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            escape(&c.address),
            c.silent.as_secs_f64(),
            c.free_bytes.map_or("?".to_owned(), human_bytes),
            c.replicas
        );
    }
    p.push_str("</table>");
    let r = &s.repairs;
    let _ = write!(
        p,
        "<h2>Re-replication</h2><p>{} running · {} queued · {} done · {} failed · {} copied · \
         {}/s lately · {} to copy{}</p>",
        r.running.len(),
        r.queued,
        r.copies_done,
        r.copies_failed,
        human_bytes(r.bytes_copied),
        human_bytes(r.bytes_per_sec as u64),
        human_bytes(r.bytes_remaining),
        r.eta
            .map(|eta| format!(" · ETA {}", human_duration(eta.as_secs())))
            .unwrap_or_default()
    );
    if !r.running.is_empty() {
        p.push_str("<table><tr><th>chunk</th><th>copying to</th></tr>");
        for (chunk, target) in &r.running {
            let _ = write!(p, "<tr><td>{chunk}</td><td>{}</td></tr>", escape(target));
        }
        p.push_str("</table>");
    }
    problems(
        &mut p,
        "Under-replicated chunks",
        &s.under_replicated,
        s.under_replicated_total,
    );
    problems(
        &mut p,
        "Chunks with a corrupt replica",
        &s.corrupt,
        s.corrupt_total,
    );
    if !s.exec_services.is_empty() {
        p.push_str("<h2>Execution-layer services</h2><ul>");
        for name in &s.exec_services {
            let _ = write!(p, "<li>{}</li>", escape(name));
        }
        p.push_str("</ul>");
    }
    p.push_str("</body></html>");
    p
}

fn problems(p: &mut String, title: &str, list: &[ChunkProblem], total: usize) {
    let _ = write!(p, "<h2>{title} ({total})</h2>");
    if list.is_empty() {
        p.push_str("<p>None.</p>");
        return;
    }
    p.push_str(
        "<table><tr><th>log</th><th>chunk</th><th>index</th><th>good / factor</th>\
         <th>length</th><th>corrupt on</th></tr>",
    );
    for c in list {
        let _ = write!(
            p,
            "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{} / {}</td>\
             <td class=\"num\">{}</td><td>{}</td></tr>",
            escape(&c.log),
            c.handle,
            c.index,
            c.good,
            c.replication,
            human_bytes(u64::from(c.length)),
            escape(&c.corrupt_on.join(", "))
        );
    }
    if total > list.len() {
        let _ = write!(p, "<p>… and {} more.</p>", total - list.len());
    }
    p.push_str("</table>");
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn human_bytes(n: u64) -> String {
    bytesize::ByteSize(n).display().iec().to_string()
}

fn human_duration(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s => format!("{} h {} min", s / 3600, s / 60 % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::status::RepairProgress;
    use crate::heartbeat::ServerOverview;
    use cairn_record::{ChunkHandle, ChunkOffset};
    use std::time::Duration;

    #[test]
    fn the_page_shows_dead_chunkservers_problems_and_escapes_names() {
        let s = ClusterStatus {
            uptime: Duration::from_secs(90),
            chunkservers: vec![
                ServerOverview {
                    address: "127.0.0.1:7001".into(),
                    live: true,
                    silent: Duration::from_millis(300),
                    free_bytes: Some(10 << 30),
                    replicas: 4,
                },
                ServerOverview {
                    address: "127.0.0.1:7002".into(),
                    live: false,
                    silent: Duration::from_secs(12),
                    free_bytes: None,
                    replicas: 2,
                },
            ],
            logs: 1,
            open_chunks: 1,
            sealed_chunks: 3,
            under_replicated: vec![ChunkProblem {
                log: "/a<b>".into(),
                handle: ChunkHandle(0xab),
                index: 2,
                good: 1,
                replication: 3,
                length: ChunkOffset(4096),
                corrupt_on: vec![],
            }],
            under_replicated_total: 1,
            corrupt: vec![],
            corrupt_total: 0,
            repairs: RepairProgress {
                queued: 2,
                bytes_remaining: 8192,
                ..RepairProgress::default()
            },
            exec_services: vec!["bank".into()],
        };
        let page = render(&s, 0x1234);
        assert!(page.contains("<b>degraded</b>"), "{page}");
        assert!(page.contains("Chunkservers (1 live of 2)"), "{page}");
        assert!(page.contains("class=\"dead\">dead"), "{page}");
        assert!(page.contains("/a&lt;b&gt;"), "{page}");
        assert!(!page.contains("/a<b>"), "{page}");
        assert!(page.contains("1 / 3"), "{page}");
        assert!(page.contains("2 queued"), "{page}");
        assert!(page.contains("<li>bank</li>"), "{page}");
        assert!(page.contains("http-equiv=\"refresh\""), "{page}");
    }
}
