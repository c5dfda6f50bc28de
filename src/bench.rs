//! `lethe bench`: per-step time and peak memory of the surgery methods against plain
//! fine-tuning, on the same model and the same samples, in one process.

use crate::data::{self, DataSpec, ForgetSpec};
use crate::error::Result;
use crate::pipeline::{load_data_for, LoadedModel};
use crate::unlearn::method::{gradients, Baseline, Method};
use crate::unlearn::{
    self, trainable, BatchPlan, ClassifierTask, MethodKind, Optimizer, Samples, StepBatch,
    StepStats, Task, Term, UnlearnConfig,
};
use candle_core::Var;
use std::alloc::{GlobalAlloc, Layout, System};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// A global allocator that counts live heap bytes and their high-water mark, so that the
/// benchmark can read each method's peak memory in one process. The binary installs it.
pub struct PeakAlloc;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for PeakAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

fn reset_peak() -> usize {
    let live = LIVE.load(Ordering::Relaxed);
    PEAK.store(live, Ordering::Relaxed);
    live
}

fn peak() -> usize {
    PEAK.load(Ordering::Relaxed)
}

pub struct BenchJob {
    pub model: PathBuf,
    pub data: DataSpec,
    pub forget: ForgetSpec,
    pub batch_size: usize,
    pub steps: usize,
    pub warmup: usize,
    pub rounds: usize,
    pub base: UnlearnConfig,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchRow {
    pub method: String,
    /// Median step time over every measured step of every round (robust to the odd step
    /// slowed by something else on the machine).
    pub step_ms: f64,
    /// Heap bytes allocated above the level before the method's first step, at most (the
    /// smallest such peak over the rounds).
    pub peak_bytes: usize,
    pub time_vs_ft: f64,
    pub memory_vs_ft: f64,
    pub forwards_per_step: f64,
    pub backwards_per_step: f64,
}

/// The benchmark's reference step: fine-tuning by cross-entropy on every sample of the batch
/// (forget and retain rows with their true labels, equally many of each), i.e. one ordinary
/// training step on the same samples the surgery methods see.
struct FineTuneAll;

impl Method for FineTuneAll {
    fn step(
        &mut self,
        batch: &dyn StepBatch,
        vars: &[Var],
        optimizer: &mut Optimizer,
    ) -> Result<StepStats> {
        let terms = batch.losses(&[Term::ForgetLikelihood, Term::Retain])?;
        let loss = ((&terms[0] + &terms[1])? * 0.5)?;
        let grads = gradients(&loss, vars)?;
        optimizer.step(vars, &grads)?;
        Ok(StepStats {
            forwards: 1,
            backwards: 1,
            ..Default::default()
        })
    }
}

const METHODS: [&str; 5] = ["ft", "igs", "igs-fast", "egs", "ft-retain-only"];

fn method_for(name: &str, base: &UnlearnConfig) -> Box<dyn Method> {
    let mut cfg = base.clone();
    match name {
        "ft" => Box::new(FineTuneAll),
        "ft-retain-only" => Box::new(Baseline {
            kind: MethodKind::Ft,
        }),
        "igs" => {
            cfg.method = MethodKind::Igs;
            cfg.fast = false;
            unlearn::make_method(&cfg)
        }
        "igs-fast" => {
            cfg.method = MethodKind::Igs;
            cfg.fast = true;
            unlearn::make_method(&cfg)
        }
        "egs" => {
            cfg.method = MethodKind::Egs;
            unlearn::make_method(&cfg)
        }
        other => unreachable!("unknown bench method {other}"),
    }
}

pub fn run(job: &BenchJob, mut on_row: impl FnMut(&str, usize)) -> Result<Vec<BenchRow>> {
    let reference = LoadedModel::open(&job.model)?;
    let data = load_data_for(&reference.classifier, &job.data)?;
    let split = data::select_forget(&data.train, &reference.classifier.labels, &job.forget)?;
    let sets = crate::verify::metrics::EvalSets::new(&data.train, &data.test, &split);
    let (_, logits) = crate::pipeline::evaluate(&reference, &sets, job.base.seed)?;
    let mut base = job.base.clone();
    base.held_out_loss =
        crate::pipeline::held_out_loss(&logits, &sets, reference.classifier.num_labels())?;
    let task = ClassifierTask::new(
        &reference.classifier,
        &data.train,
        unlearn::classifier_forget_loss(&base),
        base.seed,
    );
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); METHODS.len()];
    // The smallest peak over rounds: the first round also pays one-time allocations (thread
    // pools, kernel caches) that belong to whichever method happens to run first.
    let mut peaks = vec![usize::MAX; METHODS.len()];
    let mut passes = vec![(0usize, 0usize); METHODS.len()];
    for round in 0..job.rounds {
        for (m, name) in METHODS.iter().enumerate() {
            on_row(name, round);
            let mut params = reference.params.clone();
            let specs = reference.classifier.param_specs();
            let set = trainable::select(&mut params, &specs, &["*".to_string()], &[])?;
            let mut method = method_for(name, &base);
            let mut optimizer = Optimizer::new(base.optimizer, base.lr, set.vars.len());
            // Same seed: every method sees the same batches in the same order.
            let samples = Samples {
                forget: &split.forget,
                retain: &split.retain,
            };
            let mut plan = BatchPlan::new(samples, job.batch_size, job.batch_size, base.seed);
            let batches: Vec<Box<dyn StepBatch>> = (0..job.warmup + job.steps)
                .map(|_| {
                    let (f, r) = plan.next_step();
                    task.step_batch(&params, &f, &r)
                })
                .collect::<Result<_>>()?;
            let live_before = reset_peak();
            for b in &batches[..job.warmup] {
                method.step(b.as_ref(), &set.vars, &mut optimizer)?;
            }
            let (mut f, mut bw) = (0, 0);
            for b in &batches[job.warmup..] {
                let start = Instant::now();
                let s = method.step(b.as_ref(), &set.vars, &mut optimizer)?;
                times[m].push(start.elapsed().as_secs_f64() * 1000.0);
                f += s.forwards;
                bw += s.backwards;
            }
            peaks[m] = peaks[m].min(peak().saturating_sub(live_before));
            passes[m] = (f, bw);
        }
    }
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let ft_time = median(&times[0]);
    let ft_peak = peaks[0].max(1);
    Ok(METHODS
        .iter()
        .enumerate()
        .map(|(m, name)| BenchRow {
            method: name.to_string(),
            step_ms: median(&times[m]),
            peak_bytes: peaks[m],
            time_vs_ft: median(&times[m]) / ft_time,
            memory_vs_ft: peaks[m] as f64 / ft_peak as f64,
            forwards_per_step: passes[m].0 as f64 / job.steps as f64,
            backwards_per_step: passes[m].1 as f64 / job.steps as f64,
        })
        .collect())
}
