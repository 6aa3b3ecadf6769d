//! Where a stream or file destination joins the main rendition: at the next fragment start (a
//! keyframe), from the init segment, so whatever it writes is decodable from its first byte;
//! and where it rejoins after falling behind: its queue full, it skips to the next fragment
//! start instead of leaving a hole inside a GOP. One [`Feeder`] per destination.

use bytes::Bytes;

use crate::media::ChunkMeta;

/// What a destination is given, in order: the init segment once, then chunks.
#[derive(Debug, Clone)]
pub enum Fed {
    Init(Bytes),
    Chunk { bytes: Bytes, fragment_start: bool },
}

impl Fed {
    pub fn bytes(&self) -> &Bytes {
        match self {
            Fed::Init(b) | Fed::Chunk { bytes: b, .. } => b,
        }
    }
}

/// How a destination took what it was offered (it must never make the caller wait).
pub enum Taken {
    Yes,
    /// Its queue is full: it is not keeping up.
    Full,
    /// It has gone (its task ended).
    Gone,
}

#[derive(Debug, Default)]
pub struct Feeder {
    /// It has had the init segment and a fragment start.
    synced: bool,
    /// Its queue overflowed: chunks are dropped until the next fragment start.
    skipping: bool,
}

impl Feeder {
    /// Offers one chunk of the main rendition, `init` being its init segment (none yet: the
    /// chunk waits for nothing and is dropped). Returns true when this chunk found the
    /// destination full after it had been keeping up (to say so once).
    pub fn offer(&mut self, init: Option<&Bytes>, meta: &ChunkMeta, bytes: &Bytes, mut take: impl FnMut(Fed) -> Taken) -> bool {
        if !self.synced {
            let Some(init) = init.filter(|_| meta.fragment_start) else { return false };
            match take(Fed::Init(init.clone())) {
                Taken::Yes => self.synced = true,
                Taken::Full | Taken::Gone => return false,
            }
        }
        if self.skipping && !meta.fragment_start {
            return false;
        }
        let was_skipping = self.skipping;
        self.skipping = matches!(take(Fed::Chunk { bytes: bytes.clone(), fragment_start: meta.fragment_start }), Taken::Full);
        self.skipping && !was_skipping
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(fragment_start: bool) -> ChunkMeta {
        ChunkMeta { pts_ns: 0, duration_ns: 1, fragment_start, independent: fragment_start, wallclock_ms: 0, rendition: 0 }
    }

    #[test]
    fn starts_at_a_fragment_from_init_and_skips_to_the_next_when_full() {
        let init = Bytes::from_static(b"init");
        let chunk = |n: u8| Bytes::from(vec![n]);
        let mut f = Feeder::default();
        let mut got: Vec<Vec<u8>> = vec![];
        let mut offer = |f: &mut Feeder, start: bool, n: u8, full: bool| {
            f.offer(Some(&init), &meta(start), &chunk(n), |x| match full {
                true => Taken::Full,
                false => {
                    got.push(x.bytes().to_vec());
                    Taken::Yes
                }
            })
        };
        // Mid-fragment: nothing until a fragment start, which comes after the init segment.
        offer(&mut f, false, 1, false);
        offer(&mut f, true, 2, false);
        offer(&mut f, false, 3, false);
        // Full: said once, then nothing until the next fragment start.
        assert!(offer(&mut f, false, 4, true));
        assert!(!offer(&mut f, false, 5, true));
        offer(&mut f, false, 6, false);
        offer(&mut f, true, 7, false);
        assert_eq!(got, [b"init".to_vec(), vec![2], vec![3], vec![7]]);
        // No init segment yet: nothing, whatever the chunk.
        let mut fresh = Feeder::default();
        assert!(!fresh.offer(None, &meta(true), &chunk(0), |_| Taken::Yes));
    }
}
