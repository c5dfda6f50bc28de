//! The surgery mathematics on a problem whose answer is known.
//!
//! θ ∈ ℝ², forget loss ℓ_f = ½‖θ − a‖² with a = (3, 0), retain loss ℓ_r = ½‖θ‖², start θ₀ = (0, 1)
//! where ℓ_r = ½. Minimising ℓ_f while ℓ_r may not rise (ε = 0) has the answer θ* = (1, 0) (the
//! point of the unit circle nearest a) with KKT multiplier λ* = 2 (∇ℓ_f + λ∇ℓ_r = 0 there).

use lethe::unlearn::method::explicit_lambda;
use lethe::unlearn::{DualUpdate, DualVariable};

const A: [f64; 2] = [3.0, 0.0];

fn retain(t: [f64; 2]) -> f64 {
    0.5 * (t[0] * t[0] + t[1] * t[1])
}

fn grads(t: [f64; 2]) -> ([f64; 2], [f64; 2]) {
    ([t[0] - A[0], t[1] - A[1]], t)
}

/// Implicit surgery with plain loss form: one step on ℓ_f + λ ℓ_r, then the dual update from the
/// observed change of ℓ_r. Returns the final θ, λ and every step's retain loss.
fn implicit(epsilon: f64, beta: f64, lr: f64, steps: usize) -> ([f64; 2], f32, Vec<f64>) {
    let mut theta = [0.0, 1.0];
    let mut dual = DualVariable::new(DualUpdate::Projected, 0.0, beta, epsilon);
    let mut history = Vec::new();
    for _ in 0..steps {
        let (gf, gr) = grads(theta);
        let lambda = dual.weight() as f64;
        let before = retain(theta);
        for i in 0..2 {
            theta[i] -= lr * (gf[i] + lambda * gr[i]);
        }
        let after = retain(theta);
        dual.update((before - after) as f32);
        history.push(after);
    }
    (theta, dual.weight(), history)
}

#[test]
fn explicit_lambda_closed_form() {
    // Conflicting gradients: ⟨g_r, g_f⟩ = −3, ‖g_r‖² = 2, ε = 0.5 → λ* = (3 − 0.5)/2.
    assert!((explicit_lambda(-3.0, 2.0, 0.5) - 1.25).abs() < 1e-6);
    // Aligned gradients: no surgery.
    assert_eq!(explicit_lambda(1.0, 2.0, 0.0), 0.0);
    // Conflict smaller than the tolerance: no surgery.
    assert_eq!(explicit_lambda(-0.2, 2.0, 0.5), 0.0);
    // With λ*, the direction d = g_f + λ* g_r has ⟨g_r, d⟩ = −ε exactly.
    let (gf, gr) = ([1.0f64, -2.0], [0.5f64, 1.0]);
    let dot = gf[0] * gr[0] + gf[1] * gr[1];
    let norm = gr[0] * gr[0] + gr[1] * gr[1];
    let eps = 0.1;
    let l = explicit_lambda(dot, norm, eps);
    let d = [gf[0] + l * gr[0], gf[1] + l * gr[1]];
    assert!((d[0] * gr[0] + d[1] * gr[1] + eps).abs() < 1e-6);
}

#[test]
fn implicit_surgery_finds_the_constrained_optimum_and_its_multiplier() {
    let (theta, lambda, history) = implicit(0.0, 40.0, 0.01, 20_000);
    assert!(
        (theta[0] - 1.0).abs() < 1e-2 && theta[1].abs() < 1e-6,
        "θ = {theta:?}"
    );
    assert!((lambda - 2.0).abs() < 2e-2, "λ = {lambda}");
    let last = *history.last().unwrap();
    assert!((last - 0.5).abs() < 1e-2, "ℓ_r = {last}");
}

#[test]
fn without_the_dual_term_the_retain_loss_is_lost() {
    // β = 0 keeps λ at 0: plain descent on ℓ_f reaches a, where ℓ_r = 4.5.
    let (theta, lambda, history) = implicit(0.0, 0.0, 0.01, 20_000);
    assert_eq!(lambda, 0.0);
    assert!((theta[0] - 3.0).abs() < 1e-3);
    assert!(*history.last().unwrap() > 4.4);
}

#[test]
fn epsilon_is_the_tolerated_rise_per_step() {
    // While the forget loss still pulls outward, the retain loss settles into rising by about
    // ε per step; with ε = 0 it holds still.
    let eps = 0.002;
    let (_, _, history) = implicit(eps, 20.0, 0.05, 300);
    let rise = (history[299] - history[199]) / 100.0;
    assert!(
        (rise - eps).abs() < 0.25 * eps,
        "mean rise {rise} per step, ε = {eps}"
    );
    let (_, _, flat) = implicit(0.0, 40.0, 0.01, 3000);
    let drift = (flat[2999] - flat[1999]) / 1000.0;
    assert!(drift.abs() < 1e-5, "drift {drift} per step with ε = 0");
}

#[test]
fn explicit_surgery_never_lets_the_retain_loss_rise_with_zero_tolerance() {
    let mut theta = [0.0f64, 1.0];
    let start = retain(theta);
    let mut lambda = 0.0;
    for _ in 0..5000 {
        let (gf, gr) = grads(theta);
        let dot = gf[0] * gr[0] + gf[1] * gr[1];
        let norm = gr[0] * gr[0] + gr[1] * gr[1];
        lambda = explicit_lambda(dot, norm, 0.0);
        for i in 0..2 {
            theta[i] -= 0.01 * (gf[i] + lambda * gr[i]);
        }
        assert!(
            retain(theta) <= start + 1e-3,
            "ℓ_r rose to {}",
            retain(theta)
        );
    }
    assert!(theta[0] > 0.9 && theta[0] <= 1.0, "θ = {theta:?}");
    assert!((lambda - 2.0).abs() < 0.2, "λ* = {lambda}");
}
