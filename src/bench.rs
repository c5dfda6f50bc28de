//! `lethe bench`: per-step time and peak memory of the surgery methods against plain
//! fine-tuning, on the same model and the same samples, in one process.

use crate::arch::Classifier;
use crate::data::{self, DataSpec, ForgetSpec};
use crate::error::Result;
use crate::model::{LanguageModel, Opened};
use crate::pipeline::classifier::{evaluate, held_out_loss, load_data_for};
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

// SAFETY: every request is passed to the system allocator as it is; the counters beside it do
// not touch the memory.
unsafe impl GlobalAlloc for PeakAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: GlobalAlloc's contract for `alloc` (a non-zero-sized layout) is the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` with `layout` (GlobalAlloc's contract), which took it
        // from the system allocator.
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
    pub device: candle_core::Device,
    pub progress: bool,
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
    let reference = Opened::<Classifier>::open(&job.model, &job.device, job.progress)?;
    let data = load_data_for(&reference.arch, &job.data)?;
    let split = data::select_forget(&data.train, &reference.arch.labels, &job.forget)?;
    let sets = crate::verify::metrics::EvalSets::new(&data.train, &data.test, &split);
    let (_, logits) = evaluate(&reference, &sets, job.base.seed)?;
    let mut base = job.base.clone();
    base.held_out_loss = held_out_loss(&logits, &sets, reference.arch.num_labels())?;
    let task = ClassifierTask::new(
        &reference.arch,
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
            let specs = reference.arch.param_specs();
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

/// `lethe bench-text`: LoRA igs steps on a causal LM with synthetic token sequences, for
/// comparison with the same step in another framework (scripts/bench-vs-pytorch.sh).
pub struct TextBenchJob {
    pub model: PathBuf,
    pub device: candle_core::Device,
    /// What the frozen weights are held in.
    pub precision: crate::precision::Precision,
    pub progress: bool,
    /// Forget and retain sequences per step (half each).
    pub batch: usize,
    pub seq_len: usize,
    /// Tokens at the end of each sequence that carry the loss (the "answer").
    pub answer_len: usize,
    pub lora: crate::unlearn::lora::LoraConfig,
    pub steps: usize,
    pub warmup: usize,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct TextBenchResult {
    pub step_ms_median: f64,
    pub step_ms: Vec<f64>,
    /// Peak resident set of the process (VmHWM), MiB.
    pub peak_rss_mib: f64,
    /// Peak heap bytes above the level before the first step, MiB.
    pub step_peak_heap_mib: f64,
    pub trainable_parameters: usize,
    pub device: String,
    /// What the frozen weights were held in.
    pub dtype: &'static str,
}

/// VmHWM of this process, in bytes (0 where /proc is not available).
pub fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

pub fn run_text(job: &TextBenchJob) -> Result<TextBenchResult> {
    use crate::text::Encoded;
    use crate::unlearn::text_task::TextTask;
    let mut lm = LanguageModel::open(&job.model, &job.device, job.precision, job.progress)?;
    let half = (job.batch / 2).max(1);
    let vocab = lm.model().vocab_size() as u64;
    let mut rng = crate::rng::Rng::new(0);
    let mut sequences = |n: usize| -> Vec<Encoded> {
        (0..n)
            .map(|_| Encoded {
                ids: (0..job.seq_len)
                    .map(|_| (rng.next_u64() % vocab) as u32)
                    .collect(),
                target_start: job.seq_len - job.answer_len.min(job.seq_len - 1),
                fact: None,
            })
            .collect()
    };
    let forget = sequences(half);
    let retain = sequences(half);
    let set = crate::unlearn::lora::attach(&mut lm.opened.params, &lm.opened.arch, &job.lora, 0)?;
    let reference = crate::text::data::answer_log_probs(
        lm.model(),
        lm.params(),
        &forget,
        lm.tokenizer.pad_id,
        job.lora.scale(),
        half,
    )?;
    let task = TextTask {
        model: lm.model(),
        forget,
        refusals: Vec::new(),
        retain,
        reference_log_probs: reference.iter().map(|r| r.sum).collect(),
        objective: crate::unlearn::ForgetObjective::Npo,
        held_out_nll: 0.0,
        npo_beta: crate::defaults::text::NPO_BETA,
        simnpo: crate::unlearn::text_task::SimNpo {
            beta: crate::defaults::text::SIMNPO_BETA,
            gamma: crate::defaults::text::SIMNPO_GAMMA,
        },
        rmu: None,
        lora_scale: job.lora.scale(),
        pad_id: lm.tokenizer.pad_id,
    };
    let cfg = UnlearnConfig {
        method: MethodKind::Igs,
        objective: crate::unlearn::ForgetObjective::Npo,
        held_out_loss: 0.0,
        loss_form: crate::unlearn::LossForm::Log,
        dual_update: crate::unlearn::DualUpdate::Projected,
        fast: false,
        epsilon: 0.0,
        beta: 1.0,
        lambda0: 1.0,
        optimizer: crate::unlearn::OptimizerKind::adamw(0.0),
        lr: 1e-4,
        lr_schedule: crate::unlearn::LrSchedule::Constant,
        epochs: 1,
        steps: None,
        batch_size: half,
        forget_batch_size: None,
        seed: 0,
    };
    let mut method = unlearn::make_method(&cfg);
    let mut optimizer = Optimizer::new(cfg.optimizer, cfg.lr, set.vars.len());
    let ids: Vec<usize> = (0..half).collect();
    let batch = task.step_batch(lm.params(), &ids, &ids)?;
    for _ in 0..job.warmup {
        method.step(batch.as_ref(), &set.vars, &mut optimizer)?;
    }
    // A GPU runs asynchronously: each timed step ends when the device has finished its work.
    job.device.synchronize()?;
    let live_before = reset_peak();
    let mut times = Vec::with_capacity(job.steps);
    for _ in 0..job.steps.max(1) {
        let start = Instant::now();
        method.step(batch.as_ref(), &set.vars, &mut optimizer)?;
        job.device.synchronize()?;
        times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    let step_peak = peak().saturating_sub(live_before);
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    Ok(TextBenchResult {
        step_ms_median: sorted[sorted.len() / 2],
        step_ms: times,
        peak_rss_mib: peak_rss_bytes() as f64 / (1024.0 * 1024.0),
        step_peak_heap_mib: step_peak as f64 / (1024.0 * 1024.0),
        trainable_parameters: set.num_elements(),
        device: crate::device::name(&job.device),
        dtype: job.precision.name(),
    })
}
