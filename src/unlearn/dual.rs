//! The dual variable of implicit gradient surgery.
//!
//! After each step the method observes Δ = φ(ℓ_r before) − φ(ℓ_r after) (positive when the retain
//! loss fell). The constraint "the retain loss rises by at most ε" is violated when Δ < −ε, and
//! then λ must grow; otherwise it shrinks. Δ + ε plays the role of λ's gradient.

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum DualUpdate {
    /// λ ← max(0, λ − β(Δ + ε)): projected dual descent, the paper's form.
    Projected,
    /// An Adam step of size β on Δ + ε (with weight decay 0.01), as in the authors' code. The raw
    /// variable may go negative and acts as a reserve; the loss uses max(λ, 0).
    Adam,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct DualVariable {
    pub rule: DualUpdate,
    /// Dual step size β.
    pub beta: f64,
    /// Tolerated rise of φ(ℓ_r) per step.
    pub epsilon: f64,
    value: f64,
    adam_m: f64,
    adam_v: f64,
    adam_t: i32,
}

impl DualVariable {
    pub fn new(rule: DualUpdate, lambda0: f64, beta: f64, epsilon: f64) -> Self {
        DualVariable {
            rule,
            beta,
            epsilon,
            value: lambda0,
            adam_m: 0.0,
            adam_v: 0.0,
            adam_t: 0,
        }
    }

    /// The weight of the retain term in the loss.
    pub fn weight(&self) -> f32 {
        self.value.max(0.0) as f32
    }

    /// Updates λ from the observed change Δ of φ(ℓ_r) (positive = the retain loss fell).
    pub fn update(&mut self, delta: f32) {
        let gradient = delta as f64 + self.epsilon;
        match self.rule {
            DualUpdate::Projected => {
                self.value = (self.value - self.beta * gradient).max(0.0);
            }
            DualUpdate::Adam => {
                const B1: f64 = 0.9;
                const B2: f64 = 0.999;
                const WEIGHT_DECAY: f64 = 0.01;
                let g = gradient + WEIGHT_DECAY * self.value;
                self.adam_t += 1;
                self.adam_m = B1 * self.adam_m + (1.0 - B1) * g;
                self.adam_v = B2 * self.adam_v + (1.0 - B2) * g * g;
                let m_hat = self.adam_m / (1.0 - B1.powi(self.adam_t));
                let v_hat = self.adam_v / (1.0 - B2.powi(self.adam_t));
                self.value -= self.beta * m_hat / (v_hat.sqrt() + 1e-8);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambda_grows_when_the_retain_loss_rises_by_more_than_epsilon() {
        let mut d = DualVariable::new(DualUpdate::Projected, 1.0, 1.0, 0.01);
        d.update(-0.05); // retain loss rose by 0.05 > ε
        assert!((d.weight() - 1.04).abs() < 1e-6);
    }

    #[test]
    fn lambda_shrinks_within_tolerance_and_stays_non_negative() {
        let mut d = DualVariable::new(DualUpdate::Projected, 0.02, 1.0, 0.01);
        d.update(-0.005); // rose by less than ε: λ − (−0.005 + 0.01) = 0.015
        assert!((d.weight() - 0.015).abs() < 1e-6);
        d.update(0.5); // retain loss fell a lot
        assert_eq!(d.weight(), 0.0);
    }

    #[test]
    fn adam_rule_moves_in_the_same_directions() {
        let mut d = DualVariable::new(DualUpdate::Adam, 0.5, 0.1, 0.01);
        d.update(-0.2);
        assert!(d.weight() > 0.5);
        let mut d = DualVariable::new(DualUpdate::Adam, 0.5, 0.1, 0.01);
        d.update(0.2);
        assert!(d.weight() < 0.5);
    }
}
