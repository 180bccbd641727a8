//! Test-only fault injection (cargo feature `test-faults`): a replica that answers wrongly.
//! Without the feature nothing here reads the environment and no reply is changed.

use crate::records::WorkerReply;

/// Environment variable naming the index of the replica that answers every request wrongly.
pub const WRONG_REPLICA_ENV: &str = "CAIRN_EXEC_TEST_WRONG_REPLICA";

/// Whether replica `index` is to answer wrongly: only with the feature `test-faults` and
/// `CAIRN_EXEC_TEST_WRONG_REPLICA=index`.
pub fn answers_wrongly(index: u32) -> bool {
    cfg!(feature = "test-faults")
        && std::env::var(WRONG_REPLICA_ENV)
            .ok()
            .and_then(|v| v.parse::<u32>().ok())
            == Some(index)
}

/// `reply` made wrong: its status message altered (so its digest differs).
pub fn make_wrong(reply: &mut WorkerReply) {
    reply.message.push_str(" [wrong on purpose]");
}
