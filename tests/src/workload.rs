//! Test records: unique, self-describing lines of chosen sizes from a seeded generator.
//!
//! A line is `TAG:NNNNNN:` followed by filler up to its size. The tag names the run and the number
//! its input line, so every payload in a test is unique and says where it came from; the filler
//! mixes ASCII letters and digits with tabs and multi-byte UTF-8 so byte-exact comparison means
//! something. Lines never contain `\n` or `\r` (they are the CLI's record separator).

/// Filler alphabet: ASCII, a tab, and 2-, 3- and 4-byte UTF-8 sequences.
const FILLER: [&str; 16] = [
    "a", "b", "c", "x", "y", "z", "0", "7", "9", "Q", "\t", " ", "é", "ß", "→", "𝄞",
];

/// A small seeded generator (SplitMix64): the same seed gives the same records on every machine.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        assert!(lo <= hi);
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }
}

/// One line of exactly `size` bytes (or just its `TAG:NNNNNN:` prefix, if that is longer).
pub fn line(tag: &str, n: usize, size: usize, rng: &mut Rng) -> Vec<u8> {
    let mut out = format!("{tag}:{n:06}:").into_bytes();
    while out.len() < size {
        let piece = FILLER[(rng.next_u64() % FILLER.len() as u64) as usize];
        if out.len() + piece.len() > size {
            // Finish with ASCII so the size is exact.
            out.resize(size, b'.');
            break;
        }
        out.extend_from_slice(piece.as_bytes());
    }
    out
}

/// `count` lines tagged `tag`, numbered from 1, with sizes drawn by `size(rng, n)`.
pub fn lines(
    tag: &str,
    count: usize,
    seed: u64,
    mut size: impl FnMut(&mut Rng, usize) -> usize,
) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(seed);
    (1..=count)
        .map(|n| {
            let s = size(&mut rng, n);
            line(tag, n, s, &mut rng)
        })
        .collect()
}

/// A seed for a test: `$CAIRN_TESTS_SEED` if set, else derived from the clock. Printed, so a
/// failure can be rerun with the same records.
pub fn seed(test: &str) -> u64 {
    let seed = std::env::var("CAIRN_TESTS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    eprintln!("cairn-tests: {test}: seed {seed} (rerun with CAIRN_TESTS_SEED={seed})");
    seed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_unique_sized_and_newline_free() {
        let all = lines("t", 1000, 7, |rng, _| rng.range(1, 300));
        let unique: std::collections::HashSet<_> = all.iter().collect();
        assert_eq!(unique.len(), all.len());
        for l in &all {
            assert!(!l.contains(&b'\n') && !l.contains(&b'\r'));
            assert!(std::str::from_utf8(l).is_ok());
            assert!(l.len() <= 300);
        }
        let exact = line("t", 1, 5000, &mut Rng::new(1));
        assert_eq!(exact.len(), 5000);
    }
}
