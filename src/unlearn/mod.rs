//! Unlearning: the trainable set, objectives, methods, optimizers and the run loop.

pub mod dual;
pub mod lora;
pub mod method;
pub mod objective;
pub mod optim;
pub mod resume;
pub mod task;
pub mod text_task;
pub mod trainable;

pub use dual::{DualUpdate, DualVariable};
pub use method::{MethodKind, StepStats};
pub use task::{ClassifierTask, StepBatch, Task, Term};

pub use objective::{ForgetObjective, LossForm};
pub use optim::{LrSchedule, Optimizer, OptimizerKind, OptimizerName};
pub use trainable::TrainableSet;

use crate::error::{Error, Result};
use crate::nn::Params;
use crate::rng::Rng;
use method::{Baseline, ExplicitSurgery, ImplicitSurgery, Method};
use std::time::Instant;

/// Everything that decides an unlearning run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct UnlearnConfig {
    pub method: MethodKind,
    pub objective: ForgetObjective,
    /// Mean test cross-entropy of the model before unlearning (τ of the held-out-level objective).
    pub held_out_loss: f32,
    pub loss_form: LossForm,
    pub dual_update: DualUpdate,
    /// igs only: read the retain-loss change from the next batch (no extra forward pass).
    pub fast: bool,
    /// Tolerated rise of the retain loss per step (in φ units for igs; for egs the bound on
    /// −⟨g_r, d⟩).
    pub epsilon: f64,
    pub beta: f64,
    pub lambda0: f64,
    pub optimizer: OptimizerKind,
    pub lr: f64,
    pub lr_schedule: LrSchedule,
    pub epochs: usize,
    /// Overrides `epochs` when set.
    pub steps: Option<usize>,
    pub batch_size: usize,
    /// Forget samples per step (default: `batch_size`).
    pub forget_batch_size: Option<usize>,
    pub seed: u64,
}

#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
pub struct StepRecord {
    pub step: usize,
    pub forget_loss: f32,
    pub retain_loss: f32,
    pub lambda: Option<f32>,
}

#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct RunLog {
    pub steps: Vec<StepRecord>,
    pub forward_passes: usize,
    pub backward_passes: usize,
    pub wall_seconds: f64,
}

/// The forget objective of a classifier run.
pub fn classifier_forget_loss(cfg: &UnlearnConfig) -> objective::ForgetLoss {
    objective::ForgetLoss {
        objective: cfg.objective,
        held_out_loss: cfg.held_out_loss,
    }
}

/// Builds the method object for a configuration.
pub fn make_method(cfg: &UnlearnConfig) -> Box<dyn Method> {
    match cfg.method {
        MethodKind::Igs => Box::new(ImplicitSurgery::new(
            cfg.loss_form,
            DualVariable::new(cfg.dual_update, cfg.lambda0, cfg.beta, cfg.epsilon),
            cfg.fast,
        )),
        MethodKind::Egs => Box::new(ExplicitSurgery {
            form: cfg.loss_form,
            epsilon: cfg.epsilon,
        }),
        kind => Box::new(Baseline { kind }),
    }
}

/// Draws the batches of a run: the retain set in seeded epochs, the forget set cycled alongside.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct BatchPlan {
    retain_order: Vec<usize>,
    forget_order: Vec<usize>,
    retain_pos: usize,
    forget_pos: usize,
    batch_size: usize,
    forget_batch_size: usize,
    rng: Rng,
}

/// The samples of a run: indices into the task's forget and retain sets.
#[derive(Clone, Copy)]
pub struct Samples<'a> {
    pub forget: &'a [usize],
    pub retain: &'a [usize],
}

impl BatchPlan {
    pub fn new(samples: Samples, batch_size: usize, forget_batch_size: usize, seed: u64) -> Self {
        let mut rng = Rng::derived(seed, "batches");
        let mut retain_order = samples.retain.to_vec();
        let mut forget_order = samples.forget.to_vec();
        rng.shuffle(&mut retain_order);
        rng.shuffle(&mut forget_order);
        BatchPlan {
            retain_order,
            forget_order,
            retain_pos: 0,
            forget_pos: 0,
            batch_size,
            forget_batch_size,
            rng,
        }
    }

    pub fn steps_per_epoch(&self) -> usize {
        self.retain_order.len().div_ceil(self.batch_size)
    }

    fn take(order: &mut [usize], pos: &mut usize, n: usize, rng: &mut Rng) -> Vec<usize> {
        let n = n.min(order.len());
        if *pos + n > order.len() {
            rng.shuffle(order);
            *pos = 0;
        }
        let out = order[*pos..*pos + n].to_vec();
        *pos += n;
        out
    }

    /// The forget and retain samples of the next step.
    pub fn next_step(&mut self) -> (Vec<usize>, Vec<usize>) {
        let forget = Self::take(
            &mut self.forget_order,
            &mut self.forget_pos,
            self.forget_batch_size,
            &mut self.rng,
        );
        let retain = Self::take(
            &mut self.retain_order,
            &mut self.retain_pos,
            self.batch_size,
            &mut self.rng,
        );
        (forget, retain)
    }
}

/// Runs unlearning in place on the trainable variables of `params`.
pub fn run(
    task: &dyn Task,
    params: &Params,
    trainable: &TrainableSet,
    samples: Samples,
    cfg: &UnlearnConfig,
    control: &resume::RunControl,
    progress: &indicatif::ProgressBar,
) -> Result<RunLog> {
    if cfg.batch_size == 0 {
        return Err(Error::Usage("the batch size must be positive".into()));
    }
    if !(cfg.lr > 0.0 && cfg.lr.is_finite()) {
        return Err(Error::Usage(
            "the learning rate must be a positive number".into(),
        ));
    }
    let forget_batch = cfg.forget_batch_size.unwrap_or(cfg.batch_size);
    if forget_batch == 0 {
        return Err(Error::Usage(
            "the forget batch size must be positive".into(),
        ));
    }
    if samples.forget.is_empty() || samples.retain.is_empty() {
        return Err(Error::Usage(
            "unlearning needs at least one forget and one retain sample".into(),
        ));
    }
    let mut plan = BatchPlan::new(samples, cfg.batch_size, forget_batch, cfg.seed);
    let total_steps = cfg.steps.unwrap_or(cfg.epochs * plan.steps_per_epoch());
    if total_steps == 0 {
        return Err(Error::Usage(
            "the run has no steps: raise the number of epochs or steps".into(),
        ));
    }
    let mut method = make_method(cfg);
    let mut optimizer = Optimizer::new(cfg.optimizer, cfg.lr, trainable.vars.len());
    progress.set_length(total_steps as u64);
    let mut log = RunLog::default();
    let mut first_step = 0;
    if let (true, Some(dir)) = (control.resume, &control.state_dir) {
        if let Some((state, vars, buffers)) = resume::load(dir, params.device())? {
            if state.fingerprint != control.fingerprint {
                return Err(Error::Usage(format!(
                    "{} holds the state of a different run (other inputs or settings); remove it, or start afresh instead of resuming",
                    dir.display()
                )));
            }
            for (name, var) in trainable.names.iter().zip(&trainable.vars) {
                let saved = vars
                    .get(name)
                    .ok_or_else(|| Error::MissingTensor(name.clone()))?;
                var.set(saved)?;
            }
            optimizer.restore(state.optimizer_step, &buffers);
            method.load_state(&state.method);
            plan = state.plan;
            log = state.log;
            first_step = state.next_step;
        }
    }
    progress.set_position(first_step as u64);
    let save_state = |next_step: usize,
                      plan: &BatchPlan,
                      method: &dyn method::Method,
                      optimizer: &Optimizer,
                      log: &RunLog|
     -> Result<()> {
        let Some(dir) = &control.state_dir else {
            return Ok(());
        };
        let (optimizer_step, buffers) = optimizer.state();
        let vars: Vec<(String, candle_core::Tensor)> = trainable
            .names
            .iter()
            .zip(&trainable.vars)
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .collect();
        let state = resume::RunState {
            fingerprint: control.fingerprint.clone(),
            next_step,
            plan: plan.clone(),
            method: method.save_state(),
            optimizer_step,
            log: log.clone(),
        };
        resume::save(dir, &state, &vars, &buffers)
    };
    let start = Instant::now();
    let wall_before = log.wall_seconds;
    for step in first_step..total_steps {
        if crate::interrupt::requested() {
            log.wall_seconds = wall_before + start.elapsed().as_secs_f64();
            save_state(step, &plan, method.as_ref(), &optimizer, &log)?;
            progress.abandon();
            return Err(Error::Interrupted {
                step,
                state: control
                    .state_dir
                    .as_ref()
                    .map(|d| d.display().to_string())
                    .unwrap_or_else(|| "(none: the run has no output directory)".into()),
            });
        }
        if let Some(every) = control.checkpoint_every.filter(|&n| n > 0) {
            if step > first_step && step % every == 0 {
                log.wall_seconds = wall_before + start.elapsed().as_secs_f64();
                save_state(step, &plan, method.as_ref(), &optimizer, &log)?;
            }
        }
        optimizer.lr = cfg.lr_schedule.rate(cfg.lr, step, total_steps);
        let (forget, retain) = plan.next_step();
        let batch = task.step_batch(params, &forget, &retain)?;
        let stats = method
            .step(batch.as_ref(), &trainable.vars, &mut optimizer)
            .map_err(|e| match e {
                Error::NonFinite { what, value, .. } => Error::NonFinite { step, what, value },
                other => other,
            })?;
        log.forward_passes += stats.forwards;
        log.backward_passes += stats.backwards;
        log.steps.push(StepRecord {
            step,
            forget_loss: stats.forget_loss,
            retain_loss: stats.retain_loss,
            lambda: stats.lambda,
        });
        progress.set_message(step_message(&stats));
        progress.inc(1);
    }
    log.wall_seconds = wall_before + start.elapsed().as_secs_f64();
    progress.finish_and_clear();
    crate::runtime::release_freed_memory();
    Ok(log)
}

fn step_message(s: &StepStats) -> String {
    let mut m = String::new();
    if s.forget_loss.is_finite() {
        m.push_str(&format!("forget {:.4}  ", s.forget_loss));
    }
    if s.retain_loss.is_finite() {
        m.push_str(&format!("retain {:.4}  ", s.retain_loss));
    }
    if let Some(l) = s.lambda {
        m.push_str(&format!("λ {l:.4}"));
    }
    m
}
