//! A user-defined generator source: the example of implementing
//! [`sluice::Source`].
//!
//! It emits word tokens as they might appear in text (mixed case, some with
//! trailing punctuation, a few non-Latin), drawn with a skew from a
//! vocabulary. The sequence is deterministic: subtask *i* of *p* seeds its
//! generator from `(seed, i)`, so the same seed and parallelism give the same
//! words. `--rate` limits records per second (shared by the subtasks),
//! `--count` bounds the total. The state saved in checkpoints is the number
//! of records emitted and the generator's state, so a restore continues the
//! same sequence.

use serde::{Deserialize, Serialize};
use sluice::{Boundedness, CheckpointId, Collector, Result, RuntimeContext, Source, SourceStatus};

const SYLLABLES: &[&str] = &["ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "zu", "el", "an", "or"];
const FOREIGN: &[&str] = &["café", "naïve", "Straße", "niño", "数据", "流处理", "Ärger", "ÉCOLE", "данные", "θεσμός"];
const PUNCT: &[&str] = &["", "", "", ",", ".", "!", "?", ";", "'s", "--"];

use sluice_connectors::datagen::RateLimiter;
pub use sluice_connectors::datagen::SplitMix64;

/// The word with vocabulary index `i` (deterministic, distinct per index).
fn vocabulary_word(mut i: u64) -> String {
    if i < FOREIGN.len() as u64 {
        return FOREIGN[i as usize].to_string();
    }
    let mut w = String::new();
    loop {
        w.push_str(SYLLABLES[(i % SYLLABLES.len() as u64) as usize]);
        i /= SYLLABLES.len() as u64;
        if i == 0 {
            break;
        }
    }
    w
}

/// Draws the next token from `rng` over a vocabulary of `vocabulary` words.
pub fn next_token(rng: &mut SplitMix64, vocabulary: u64) -> String {
    let r = rng.next_u64();
    let a = (r & 0xFFFF_FFFF) % vocabulary;
    let b = (r >> 32) % vocabulary;
    // The product of two uniform draws skews towards small indices (hot words).
    let mut word = vocabulary_word(a * b / vocabulary.max(1));
    let style = rng.next_u64();
    if style % 7 == 0 {
        word = word.to_uppercase();
    } else if style % 5 == 0 {
        let mut c = word.chars();
        if let Some(f) = c.next() {
            word = f.to_uppercase().chain(c).collect();
        }
    }
    word.push_str(PUNCT[((style >> 8) % PUNCT.len() as u64) as usize]);
    word
}

/// The per-subtask generator seed.
pub fn subtask_seed(seed: u64, subtask: u32) -> SplitMix64 {
    SplitMix64::for_stream(seed, u64::from(subtask))
}

/// The saved position of a [`WordGenerator`] subtask.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct GeneratorState {
    /// Records emitted so far by this subtask.
    pub emitted: u64,
    /// The generator's state after them.
    pub rng: SplitMix64,
}

/// Generates word tokens. See the module docs.
#[derive(Debug, Clone)]
pub struct WordGenerator {
    seed: u64,
    rate: Option<f64>,
    count: Option<u64>,
    vocabulary: u64,
    state: Option<GeneratorState>,
    limit: Option<u64>,
    limiter: RateLimiter,
}

impl WordGenerator {
    /// A generator with `seed`, at most `rate` records/s in total (`None`:
    /// as fast as possible), and `count` records in total (`None`: unbounded).
    pub fn new(seed: u64, rate: Option<f64>, count: Option<u64>) -> Self {
        WordGenerator {
            seed,
            rate,
            count,
            vocabulary: 10_000,
            state: None,
            limit: None,
            limiter: RateLimiter::default(),
        }
    }

    /// Uses a vocabulary of `n` distinct words (default 10 000).
    pub fn with_vocabulary(mut self, n: u64) -> Self {
        self.vocabulary = n.max(1);
        self
    }
}

impl Source<String> for WordGenerator {
    type State = Option<GeneratorState>;

    fn boundedness(&self) -> Boundedness {
        if self.count.is_some() {
            Boundedness::Bounded
        } else {
            Boundedness::Unbounded
        }
    }

    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        let p = u64::from(ctx.parallelism.max(1));
        let i = u64::from(ctx.subtask_index);
        self.limit = self.count.map(|n| n / p + u64::from(i < n % p));
        self.limiter = RateLimiter::optional(self.rate.map(|r| r / p as f64));
        if self.state.is_none() {
            self.state = Some(GeneratorState { emitted: 0, rng: subtask_seed(self.seed, ctx.subtask_index) });
        }
        Ok(())
    }

    fn poll_next(&mut self, out: &mut dyn Collector<String>) -> Result<SourceStatus> {
        let Some(state) = self.state.as_mut() else {
            return Ok(SourceStatus::Finished);
        };
        let budget = match self.limiter.budget(512) {
            Ok(n) => n,
            Err(wait) => return Ok(SourceStatus::Idle(wait)),
        };
        for _ in 0..budget {
            if self.limit.is_some_and(|l| state.emitted >= l) {
                return Ok(SourceStatus::Finished);
            }
            let token = next_token(&mut state.rng, self.vocabulary);
            state.emitted += 1;
            self.limiter.emitted(1);
            out.collect(token)?;
        }
        Ok(SourceStatus::MoreAvailable)
    }

    fn snapshot_state(&mut self, _checkpoint: CheckpointId) -> Result<Self::State> {
        Ok(self.state)
    }

    fn restore_state(&mut self, state: Self::State) -> Result<()> {
        self.state = state;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn run(gen: &mut WordGenerator, subtask: u32, p: u32) -> Vec<String> {
        gen.open(&RuntimeContext::for_test(subtask, p)).unwrap();
        let mut out = Vec::new();
        while gen.poll_next(&mut out).unwrap() != SourceStatus::Finished {}
        out
    }

    #[test]
    fn same_seed_same_words_and_counts_split() {
        let a = run(&mut WordGenerator::new(7, None, Some(1001)), 0, 2);
        let b = run(&mut WordGenerator::new(7, None, Some(1001)), 0, 2);
        let c = run(&mut WordGenerator::new(7, None, Some(1001)), 1, 2);
        assert_eq!(a, b);
        assert_eq!(a.len() + c.len(), 1001);
        assert_ne!(a[..10], c[..10]);
        assert_ne!(a, run(&mut WordGenerator::new(8, None, Some(1001)), 0, 2));
    }

    #[test]
    fn restore_continues_the_sequence() {
        let full = run(&mut WordGenerator::new(3, None, Some(600)), 0, 1);
        let mut g = WordGenerator::new(3, None, Some(600));
        g.open(&RuntimeContext::for_test(0, 1)).unwrap();
        let mut first = Vec::new();
        g.poll_next(&mut first).unwrap();
        let saved = g.snapshot_state(CheckpointId(1)).unwrap();
        let mut h = WordGenerator::new(3, None, Some(600));
        h.restore_state(saved).unwrap();
        first.extend(run(&mut h, 0, 1));
        assert_eq!(first, full);
    }
}
