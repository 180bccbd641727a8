//! The bank's snapshot: its state in the canonical layout of the crate documentation
//! ("Snapshot layout, version 1"), and [`cairn_exec::Snapshot`] for [`Bank`].

use std::collections::BTreeMap;

use crate::{Bank, Claim, State};

/// The layout's version byte.
const VERSION: u8 = 1;

/// `state` in the snapshot layout.
fn encode(state: &State) -> Vec<u8> {
    let mut out = vec![VERSION];
    let put = |out: &mut Vec<u8>, s: &str| {
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    };
    out.extend_from_slice(&(state.accounts.len() as u64).to_le_bytes());
    for (name, balance) in &state.accounts {
        put(&mut out, name);
        out.extend_from_slice(&balance.to_le_bytes());
    }
    out.extend_from_slice(&(state.claims.len() as u64).to_le_bytes());
    for (name, claim) in &state.claims {
        put(&mut out, name);
        put(&mut out, &claim.claimant);
        put(&mut out, &claim.request_id);
    }
    out
}

/// Reads the layout from the front of a byte string.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        if self.bytes.len() < n {
            return Err(format!("the snapshot ends inside {what}"));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u64(&mut self, what: &str) -> Result<u64, String> {
        let b = self.take(8, what)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    fn string(&mut self, what: &str) -> Result<String, String> {
        let len = self.take(4, what)?;
        let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
    }
}

/// Inserts `value` under `name`, which must come after every name before it.
fn insert_in_order<V>(map: &mut BTreeMap<String, V>, name: String, value: V) -> Result<(), String> {
    if map.last_key_value().is_some_and(|(last, _)| *last >= name) {
        return Err(format!("{name:?} is out of order or repeated"));
    }
    map.insert(name, value);
    Ok(())
}

/// The state `bytes` encode; an error names what is not in the layout.
fn decode(bytes: &[u8]) -> Result<State, String> {
    let mut r = Reader { bytes };
    let version = r.take(1, "the version")?[0];
    if version != VERSION {
        return Err(format!("snapshot version {version}, not {VERSION}"));
    }
    let mut state = State::default();
    let accounts = r.u64("the account count")?;
    for _ in 0..accounts {
        let name = r.string("an account name")?;
        let balance = r.u64("a balance")?;
        insert_in_order(&mut state.accounts, name, balance)?;
    }
    let claims = r.u64("the claim count")?;
    for _ in 0..claims {
        let name = r.string("a claim name")?;
        let claimant = r.string("a claimant")?;
        let request_id = r.string("a request id")?;
        insert_in_order(
            &mut state.claims,
            name,
            Claim {
                claimant,
                request_id,
            },
        )?;
    }
    if !r.bytes.is_empty() {
        return Err(format!("{} bytes after the last claim", r.bytes.len()));
    }
    Ok(state)
}

impl cairn_exec::Snapshot for Bank {
    fn snapshot(&self) -> Vec<u8> {
        encode(&self.state())
    }

    fn restore(&self, bytes: &[u8]) -> Result<(), String> {
        let state = decode(bytes)?;
        *self.state() = state;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_exec::Snapshot as _;

    fn sample() -> State {
        let mut state = State::default();
        state.accounts.insert("bob".into(), 7);
        state.accounts.insert("alice".into(), u64::MAX);
        state.accounts.insert("".into(), 0);
        state.claims.insert(
            "prize".into(),
            Claim {
                claimant: "bob".into(),
                request_id: "ab".repeat(16),
            },
        );
        state
    }

    // Proves: a state encodes to the documented bytes (version, counts, names in order,
    // little-endian integers) and decodes back to itself; equal states give equal bytes.
    #[test]
    fn the_layout_round_trips_byte_for_byte() {
        let state = sample();
        let bytes = encode(&state);
        let mut expected = vec![1u8];
        expected.extend_from_slice(&3u64.to_le_bytes());
        for (name, balance) in [("", 0u64), ("alice", u64::MAX), ("bob", 7)] {
            expected.extend_from_slice(&(name.len() as u32).to_le_bytes());
            expected.extend_from_slice(name.as_bytes());
            expected.extend_from_slice(&balance.to_le_bytes());
        }
        expected.extend_from_slice(&1u64.to_le_bytes());
        for s in ["prize", "bob", &"ab".repeat(16)] {
            expected.extend_from_slice(&(s.len() as u32).to_le_bytes());
            expected.extend_from_slice(s.as_bytes());
        }
        assert_eq!(bytes, expected);
        assert_eq!(decode(&bytes).unwrap(), state);
        assert_eq!(encode(&decode(&bytes).unwrap()), bytes);
        assert_eq!(encode(&State::default()), {
            let mut e = vec![1u8];
            e.extend_from_slice(&[0; 16]);
            e
        });
    }

    // Proves: a restore refuses a cut snapshot, a trailing byte, another version and names out
    // of order, and leaves the bank's state as it was when it refuses.
    #[test]
    fn a_restore_refuses_what_is_not_the_layout() {
        let bytes = encode(&sample());
        let bank = Bank::default();
        for cut in [0, 1, 9, bytes.len() - 1] {
            assert!(bank.restore(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(
            bank.restore(&trailing)
                .unwrap_err()
                .contains("after the last claim")
        );
        let mut version = bytes.clone();
        version[0] = 2;
        assert!(bank.restore(&version).unwrap_err().contains("version 2"));
        // "b" then "a": out of order.
        let mut unordered = vec![1u8];
        unordered.extend_from_slice(&2u64.to_le_bytes());
        for name in ["b", "a"] {
            unordered.extend_from_slice(&1u32.to_le_bytes());
            unordered.extend_from_slice(name.as_bytes());
            unordered.extend_from_slice(&1u64.to_le_bytes());
        }
        unordered.extend_from_slice(&0u64.to_le_bytes());
        assert!(
            bank.restore(&unordered)
                .unwrap_err()
                .contains("out of order")
        );
        assert_eq!(*bank.state(), State::default());
        bank.restore(&bytes).unwrap();
        assert_eq!(*bank.state(), sample());
        assert_eq!(bank.snapshot(), bytes);
    }
}
