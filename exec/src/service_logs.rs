//! A service's logs and their names: `/exec/S/inputs` (INPUT, RF 3), `/exec/S/votes` (VOTE,
//! RF 3) and `/exec/S/outputs/I` (OUTPUT of replica I, RF 1, placed on the chunkserver beside
//! replica I), and their creation.

use anyhow::Context as _;
use cairn_client::{Client, LogOptions};

/// Replication factor of a service's input and vote logs.
pub const SHARED_LOG_REPLICATION: u32 = 3;

/// The names of one service's logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceLogs {
    service: String,
}

impl ServiceLogs {
    /// The logs of `service` (a leading `/` is ignored: `/bank` and `bank` are one service).
    /// Names are letters, digits, `-`, `_` and `.`.
    pub fn new(service: &str) -> anyhow::Result<ServiceLogs> {
        let service = service.strip_prefix('/').unwrap_or(service);
        anyhow::ensure!(
            !service.is_empty()
                && service.len() <= 128
                && service
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
            "a service name is 1 to 128 letters, digits, '-', '_' or '.', not {service:?}"
        );
        Ok(ServiceLogs {
            service: service.to_owned(),
        })
    }

    /// The service's name.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// `/exec/S/inputs`.
    pub fn inputs(&self) -> String {
        format!("/exec/{}/inputs", self.service)
    }

    /// `/exec/S/votes`.
    pub fn votes(&self) -> String {
        format!("/exec/{}/votes", self.service)
    }

    /// `/exec/S/outputs/` (the prefix of every output log).
    pub fn outputs_prefix(&self) -> String {
        format!("/exec/{}/outputs/", self.service)
    }

    /// `/exec/S/outputs/I`.
    pub fn output(&self, replica: u32) -> String {
        format!("{}{replica}", self.outputs_prefix())
    }

    /// The number of replicas: how many output logs exist. Fails if the service has none.
    pub async fn replica_count(&self, client: &Client) -> anyhow::Result<u32> {
        let prefix = self.outputs_prefix();
        let logs = client.list_logs(&prefix).await?;
        let n = logs
            .iter()
            .filter(|l| l.path[prefix.len()..].parse::<u32>().is_ok())
            .count() as u32;
        anyhow::ensure!(
            n > 0,
            "service {} has no output logs: run `cairn exec create {}` first",
            self.service,
            self.service
        );
        Ok(n)
    }

    /// Creates the input and vote logs (RF 3; existing ones are kept) and, for each of the
    /// `replicas`, its output log (RF 1) placed on [`beside`] it. Returns where each output log
    /// lives.
    pub async fn create(&self, client: &Client, replicas: u32) -> anyhow::Result<Vec<String>> {
        anyhow::ensure!(
            replicas >= 1 && replicas % 2 == 1,
            "--replicas must be odd (2f+1), not {replicas}"
        );
        for path in [self.inputs(), self.votes()] {
            let options = LogOptions::default().with_replication(SHARED_LOG_REPLICATION);
            match client.create_log(&path, options).await {
                Ok(_) | Err(cairn_client::Error::LogExists { .. }) => {}
                Err(e) => return Err(e).with_context(|| format!("create {path}")),
            }
        }
        let mut placed = Vec::new();
        for i in 0..replicas {
            placed.push(self.create_output(client, i, None).await?);
        }
        Ok(placed)
    }

    /// Creates replica `index`'s output log placed on `chunkserver` (default: [`beside`]), or
    /// checks the existing one is placed there. Returns its chunkserver.
    pub async fn create_output(
        &self,
        client: &Client,
        index: u32,
        chunkserver: Option<&str>,
    ) -> anyhow::Result<String> {
        let path = self.output(index);
        let existing = client
            .list_logs(&path)
            .await?
            .into_iter()
            .find(|l| l.path == path);
        if let Some(log) = existing {
            let at = log.place_on.unwrap_or_default();
            if let Some(wanted) = chunkserver {
                anyhow::ensure!(
                    at == wanted,
                    "{path} is placed on {at:?}, not on --chunkserver {wanted}"
                );
            }
            return Ok(at);
        }
        let at = match chunkserver {
            Some(a) => a.to_owned(),
            None => beside(client, index).await?,
        };
        let options = LogOptions::default()
            .with_replication(1)
            .with_place_on(at.clone());
        match client.create_log(&path, options).await {
            Ok(_) | Err(cairn_client::Error::LogExists { .. }) => Ok(at),
            Err(e) => Err(e).with_context(|| format!("create {path} on {at}")),
        }
    }
}

/// The chunkserver "beside" replica `index` when none is named: the `index`-th live
/// chunkserver in address order (wrapping around when there are fewer).
pub async fn beside(client: &Client, index: u32) -> anyhow::Result<String> {
    let live: Vec<String> = client
        .list_chunkservers()
        .await?
        .into_iter()
        .filter(|c| c.live)
        .map(|c| c.address)
        .collect();
    anyhow::ensure!(!live.is_empty(), "no live chunkserver");
    Ok(live[index as usize % live.len()].clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves: a service's log names follow /exec/S/…, a leading slash names the same service,
    // and names outside the allowed characters are refused.
    #[test]
    fn names_of_a_service_logs() {
        let logs = ServiceLogs::new("/bank").unwrap();
        assert_eq!(logs, ServiceLogs::new("bank").unwrap());
        assert_eq!(logs.inputs(), "/exec/bank/inputs");
        assert_eq!(logs.votes(), "/exec/bank/votes");
        assert_eq!(logs.output(2), "/exec/bank/outputs/2");
        assert!(ServiceLogs::new("").is_err());
        assert!(ServiceLogs::new("a/b").is_err());
    }
}
