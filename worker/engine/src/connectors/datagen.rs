//! The data generator: deterministic records from a seed, bounded or rate-limited.
//! Record `i` comes from an RNG seeded by `(seed, i)` and belongs to split
//! `i % SPLITS`; splits are dealt to subtasks, so the generated data is identical at any
//! parallelism and a restored generator resumes exactly where its checkpoint left it.

use super::{ReaderPoll, Source, SourceReader};
use crate::error::Result;
use crate::runtime::{Rec, SubtaskInfo};
use crate::time::NO_TIMESTAMP;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use std::sync::Arc;
use std::time::Instant;

/// What the generator function gets for each record.
pub struct GenContext {
    /// Global index of the record (0, 1, 2, … across all subtasks).
    pub index: u64,
    /// An RNG seeded from the generator's seed and `index`.
    pub rng: SmallRng,
}

impl std::fmt::Debug for GenContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GenContext({})", self.index)
    }
}

type GenFn<T> = Arc<dyn Fn(&mut GenContext) -> T + Send + Sync>;

/// Generates records with a function of their index and a seeded RNG.
///
/// ```
/// use rand::Rng;
/// use weir_engine::connectors::DataGen;
/// let clicks = DataGen::new(42, |g| (format!("user_{}", g.rng.gen_range(0..10)), g.index))
///     .bounded(1_000);
/// # let _ = clicks;
/// ```
pub struct DataGen<T> {
    seed: u64,
    f: GenFn<T>,
    count: Option<u64>,
    rows_per_second: Option<f64>,
}

impl<T> DataGen<T> {
    /// An unbounded generator (see [`DataGen::bounded`] and [`DataGen::rows_per_second`]).
    pub fn new(seed: u64, f: impl Fn(&mut GenContext) -> T + Send + Sync + 'static) -> Self {
        DataGen {
            seed,
            f: Arc::new(f),
            count: None,
            rows_per_second: None,
        }
    }

    /// Stops after `count` records in total.
    pub fn bounded(mut self, count: u64) -> Self {
        self.count = Some(count);
        self
    }

    /// Limits the total rate (split evenly across subtasks).
    pub fn rows_per_second(mut self, rate: f64) -> Self {
        self.rows_per_second = Some(rate);
        self
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

struct GenReader<T> {
    seed: u64,
    f: GenFn<T>,
    splits: super::IndexSplits,
    rate: Option<f64>,
    started: Instant,
    produced: u64,
}

impl<T: Send + Clone + 'static> Source<T> for DataGen<T> {
    fn create_reader(&self, info: &SubtaskInfo) -> Result<Box<dyn SourceReader<T>>> {
        Ok(Box::new(GenReader {
            seed: self.seed,
            f: self.f.clone(),
            splits: super::IndexSplits::new(info, self.count)?,
            rate: self.rows_per_second.map(|r| r / info.parallelism as f64),
            started: Instant::now(),
            produced: 0,
        }))
    }
}

impl<T: Send + 'static> SourceReader<T> for GenReader<T> {
    fn poll(&mut self, max: usize) -> Result<ReaderPoll<T>> {
        let mut budget = max as u64;
        if let Some(rate) = self.rate {
            let allowed = (self.started.elapsed().as_secs_f64() * rate) as u64;
            budget = budget.min(allowed.saturating_sub(self.produced));
            if budget == 0 {
                return Ok(ReaderPoll::Pending((1000.0 / rate).clamp(1.0, 100.0) as u64));
            }
        }
        let mut out = Vec::with_capacity(budget as usize);
        while out.len() < budget as usize {
            let Some(index) = self.splits.next() else {
                break;
            };
            let mut ctx = GenContext {
                index,
                rng: SmallRng::seed_from_u64(splitmix(self.seed ^ splitmix(index))),
            };
            out.push(Rec {
                ts: NO_TIMESTAMP,
                value: (self.f)(&mut ctx),
            });
        }
        if out.is_empty() {
            return Ok(ReaderPoll::End);
        }
        self.produced += out.len() as u64;
        Ok(ReaderPoll::Records(out))
    }

    fn snapshot_state(&mut self) -> Result<Vec<Vec<u8>>> {
        Ok(self.splits.snapshot())
    }
}
