//! LZF compression (liblzf's format, which Redis uses for strings in RDB
//! files). Ours keeps its hash table between calls: the `lzf` crate's
//! compressor allocates a fresh 512 KB table per string, which dominates
//! the cost for the short values a snapshot is made of. Stale entries from
//! earlier inputs are told apart by position (each input gets positions
//! above every earlier one), so the table is never cleared.

const HLOG: u32 = 14;
const HSIZE: usize = 1 << HLOG;
/// Longest back reference distance (13 bits + 1) and length (8 + 3 bits + 2).
const MAX_OFF: usize = 1 << 13;
const MAX_REF: usize = (1 << 8) + (1 << 3);
/// Longest literal run one control byte covers.
const MAX_LIT: usize = 1 << 5;

/// A compressor with its table; one per thread that compresses.
pub struct Lzf {
    table: Box<[u32]>,
    /// Positions of the current input start above this.
    base: u32,
}

impl Default for Lzf {
    fn default() -> Lzf {
        Lzf {
            table: vec![0; HSIZE].into_boxed_slice(),
            base: 0,
        }
    }
}

impl std::fmt::Debug for Lzf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lzf").field("base", &self.base).finish()
    }
}

#[inline]
fn hash(b: &[u8]) -> usize {
    let v = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
    (v.wrapping_mul(2654435761) >> (32 - HLOG)) as usize
}

impl Lzf {
    /// Appends the compressed form of `input` to `out` if it takes at most
    /// `max_len` bytes (Redis stores a string compressed only when that
    /// saves at least 4 bytes); otherwise leaves `out` as it was and
    /// returns false.
    pub fn compress(&mut self, input: &[u8], out: &mut Vec<u8>, max_len: usize) -> bool {
        let n = input.len();
        if n < 4 || n >= (u32::MAX / 4) as usize {
            return false;
        }
        if self.base as usize + n + 1 >= u32::MAX as usize {
            self.table.fill(0);
            self.base = 0;
        }
        let base = self.base;
        self.base += n as u32 + 1;
        let start = out.len();
        let limit = start + max_len;
        let mut lit = 0usize; // start of the pending literal run
        let mut i = 0usize;
        while i + 2 < n {
            let h = hash(&input[i..]);
            let stored = self.table[h];
            self.table[h] = base + 1 + i as u32;
            if stored > base {
                let r = (stored - base - 1) as usize;
                let off = i - r - 1;
                if off < MAX_OFF && input[r..r + 3] == input[i..i + 3] {
                    // extend the match
                    let max = (n - i).min(MAX_REF);
                    let mut len = 3;
                    while len < max && input[r + len] == input[i + len] {
                        len += 1;
                    }
                    if !emit_literals(&input[lit..i], out, limit) {
                        out.truncate(start);
                        return false;
                    }
                    let l = len - 2;
                    if l < 7 {
                        out.push(((l as u8) << 5) | (off >> 8) as u8);
                    } else {
                        out.push((7 << 5) | (off >> 8) as u8);
                        out.push((l - 7) as u8);
                    }
                    out.push(off as u8);
                    if out.len() > limit {
                        out.truncate(start);
                        return false;
                    }
                    // index the positions the match covered
                    let end = i + len;
                    let mut j = i + 1;
                    while j < end && j + 2 < n {
                        self.table[hash(&input[j..])] = base + 1 + j as u32;
                        j += 1;
                    }
                    i = end;
                    lit = i;
                    continue;
                }
            }
            i += 1;
        }
        if !emit_literals(&input[lit..], out, limit) {
            out.truncate(start);
            return false;
        }
        true
    }
}

/// Literal runs of up to 32 bytes, each behind its control byte.
fn emit_literals(lits: &[u8], out: &mut Vec<u8>, limit: usize) -> bool {
    let need = lits.len() + lits.len().div_ceil(MAX_LIT);
    if out.len() + need > limit {
        return false;
    }
    for run in lits.chunks(MAX_LIT) {
        out.push((run.len() - 1) as u8);
        out.extend_from_slice(run);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(lzf: &mut Lzf, data: &[u8]) -> Option<usize> {
        let mut out = vec![0xAA]; // appends after what is there
        if !lzf.compress(data, &mut out, data.len()) {
            assert_eq!(out, [0xAA], "left as it was");
            return None;
        }
        let back = ::lzf::decompress(&out[1..], data.len()).expect("liblzf reads it");
        assert_eq!(back, data);
        Some(out.len() - 1)
    }

    #[test]
    fn liblzf_decompresses_what_we_compress() {
        let mut lzf = Lzf::default();
        let mut rng = fastrand::Rng::with_seed(7);
        let mut compressed = 0;
        for round in 0..2000 {
            let n = rng.usize(4..3000);
            // from very repetitive to random
            let alphabet = [1u8, 2, 4, 16, 255][round % 5];
            let data: Vec<u8> = if round % 7 == 0 {
                b"value:000000000042".repeat(n / 18 + 1)
            } else {
                (0..n).map(|_| rng.u8(0..alphabet)).collect()
            };
            compressed += roundtrip(&mut lzf, &data).is_some() as usize;
        }
        assert!(compressed > 1000, "{compressed}");
        // long matches within the 8 KB window; a copy beyond it is not found
        let mut big = vec![0u8; 20000];
        rng.fill(&mut big[..4000]);
        big.copy_within(0..4000, 4000);
        big[8000..].fill(b'x');
        assert!(roundtrip(&mut lzf, &big).unwrap() < 4400);
        let mut far = vec![0u8; 18000];
        rng.fill(&mut far[..9000]);
        far.copy_within(0..9000, 9000);
        assert_eq!(roundtrip(&mut lzf, &far), None);
        assert_eq!(
            roundtrip(&mut lzf, b"abcdefgh"),
            None,
            "no gain, not stored"
        );
    }

    #[test]
    fn the_table_survives_a_position_wraparound() {
        let mut lzf = Lzf {
            base: u32::MAX - 100,
            ..Default::default()
        };
        let data = b"abcabcabcabcabcabcabcabcabcabcabcabc".repeat(4);
        assert!(roundtrip(&mut lzf, &data).is_some());
        assert!(roundtrip(&mut lzf, &data).is_some());
    }
}
