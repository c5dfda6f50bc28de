//! The statistics that judge forgetting: the two-sample Kolmogorov–Smirnov test (TOFU's forget
//! quality is its p-value), the area under the ROC curve of a membership score (the attacks of
//! MUSE and open-unlearning), and the harmonic mean (TOFU's model utility). Plain functions over
//! slices; docs/method.md gives the definitions and their sources.

/// The result of a two-sample Kolmogorov–Smirnov test.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KsTest {
    /// D = sup |F_a − F_b| over the two empirical distribution functions.
    pub statistic: f64,
    /// P(D ≥ the observed D) when both samples come from one continuous distribution
    /// (two-sided).
    pub p_value: f64,
}

/// Above this many lattice cells (n·m), the p-value comes from the asymptotic distribution.
const EXACT_CELLS: usize = 25_000_000;

/// The two-sample Kolmogorov–Smirnov test of `a` against `b` (two-sided). The p-value is exact
/// (the share of the equally likely orderings of the pooled sample whose statistic reaches the
/// observed one) up to n·m = 25 million, and Kolmogorov's asymptotic distribution above. None
/// when a sample is empty or holds a NaN.
pub fn ks_two_sample(a: &[f64], b: &[f64]) -> Option<KsTest> {
    let (n, m) = (a.len(), b.len());
    if n == 0 || m == 0 || a.iter().chain(b).any(|x| x.is_nan()) {
        return None;
    }
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    // The largest |i·m − j·n| over the points where either distribution function steps, with
    // i and j the counts of values ≤ the point: D·n·m, an integer.
    let (mut i, mut j, mut h) = (0usize, 0usize, 0usize);
    while i < n || j < m {
        let x = match (a.get(i), b.get(j)) {
            (Some(&x), Some(&y)) => x.min(y),
            (Some(&x), None) => x,
            (None, Some(&y)) => y,
            (None, None) => unreachable!("the loop runs while a value is left"),
        };
        while i < n && a[i] <= x {
            i += 1;
        }
        while j < m && b[j] <= x {
            j += 1;
        }
        h = h.max((i * m).abs_diff(j * n));
    }
    let statistic = h as f64 / (n * m) as f64;
    let p_value = if n.saturating_mul(m) <= EXACT_CELLS {
        1.0 - probability_inside(n, m, h)
    } else {
        let en = (n * m) as f64 / (n + m) as f64;
        let lambda = (en.sqrt() + 0.12 + 0.11 / en.sqrt()) * statistic;
        kolmogorov_tail(lambda)
    };
    Some(KsTest {
        statistic,
        p_value: p_value.clamp(0.0, 1.0),
    })
}

/// The probability that a random ordering of n values of one sample and m of the other keeps
/// |i·m − j·n| < h at every prefix (i of the first, j of the second): a walk on the lattice from
/// (0, 0) to (n, m) where each step's direction is drawn without replacement.
fn probability_inside(n: usize, m: usize, h: usize) -> f64 {
    let inside = |i: usize, j: usize| (i * m).abs_diff(j * n) < h;
    // row[j] holds the probability of reaching (i, j) without leaving the band.
    let mut row = vec![0f64; m + 1];
    for i in 0..=n {
        for j in 0..=m {
            let p = if i == 0 && j == 0 {
                1.0
            } else {
                let left = n - i + m - j + 1;
                let from_i = if i > 0 {
                    row[j] * (n - i + 1) as f64 / left as f64
                } else {
                    0.0
                };
                let from_j = if j > 0 {
                    row[j - 1] * (m - j + 1) as f64 / left as f64
                } else {
                    0.0
                };
                from_i + from_j
            };
            row[j] = if inside(i, j) || (i == 0 && j == 0) {
                p
            } else {
                0.0
            };
        }
    }
    row[m]
}

/// Q(λ) = 2 Σ_{k≥1} (−1)^{k−1} e^{−2k²λ²}, the tail of Kolmogorov's distribution.
fn kolmogorov_tail(lambda: f64) -> f64 {
    if lambda < 0.2 {
        return 1.0;
    }
    let mut sum = 0.0;
    for k in 1..=100 {
        let k = k as f64;
        let term = (-2.0 * k * k * lambda * lambda).exp();
        sum += if k as u64 % 2 == 1 { term } else { -term };
        if term < 1e-16 {
            break;
        }
    }
    2.0 * sum
}

/// The area under the ROC curve of a score that should be higher for `positives` than for
/// `negatives`: P(a positive outscores a negative), ties counting one half (the Mann–Whitney
/// statistic over n·m). None when either side is empty or a score is NaN.
pub fn auc(positives: &[f64], negatives: &[f64]) -> Option<f64> {
    if positives.is_empty()
        || negatives.is_empty()
        || positives.iter().chain(negatives).any(|x| x.is_nan())
    {
        return None;
    }
    let mut neg = negatives.to_vec();
    neg.sort_by(f64::total_cmp);
    let mut wins = 0f64;
    for &p in positives {
        let below = neg.partition_point(|&x| x < p);
        let not_above = neg.partition_point(|&x| x <= p);
        wins += below as f64 + 0.5 * (not_above - below) as f64;
    }
    Some(wins / (positives.len() * negatives.len()) as f64)
}

/// The harmonic mean of values in [0, ∞): 0 when any value is 0. None for no values, a negative
/// value or a NaN.
pub fn harmonic_mean(values: &[f64]) -> Option<f64> {
    if values.is_empty() || values.iter().any(|v| v.is_nan() || *v < 0.0) {
        return None;
    }
    if values.contains(&0.0) {
        return Some(0.0);
    }
    Some(values.len() as f64 / values.iter().map(|v| 1.0 / v).sum::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ks_on_samples_whose_p_values_are_known_by_hand() {
        // Fully separated samples of 3 and 3: D = 1, and 2 of the C(6, 3) = 20 orderings put
        // one sample wholly before the other.
        let t = ks_two_sample(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]).unwrap();
        assert_eq!(t.statistic, 1.0);
        assert!((t.p_value - 0.1).abs() < 1e-12, "{t:?}");
        // Perfectly interleaved: D = 1/3, the smallest a statistic of 3 and 3 can be, so every
        // ordering reaches it: p = 1.
        let t = ks_two_sample(&[1.0, 3.0, 5.0], &[2.0, 4.0, 6.0]).unwrap();
        assert!((t.statistic - 1.0 / 3.0).abs() < 1e-12);
        assert!((t.p_value - 1.0).abs() < 1e-12, "{t:?}");
        // 1 and 2 values, b's value above both of a's: D = 1; 1 of the C(3, 1) = 3 orderings
        // puts b last, 1 puts it first: p = 2/3.
        let t = ks_two_sample(&[1.0, 2.0], &[3.0]).unwrap();
        assert_eq!(t.statistic, 1.0);
        assert!((t.p_value - 2.0 / 3.0).abs() < 1e-12, "{t:?}");
        // The order of the samples does not matter.
        let (x, y) = ([0.3, 1.7, 2.2, 9.0, 4.4], [0.1, 5.0, 6.1]);
        assert_eq!(ks_two_sample(&x, &y), ks_two_sample(&y, &x));
        assert!(ks_two_sample(&[], &[1.0]).is_none());
        assert!(ks_two_sample(&[f64::NAN], &[1.0]).is_none());
    }

    #[test]
    fn ks_counts_ties_at_one_point() {
        // a's ECDF reaches 1 at 1.0 where b's is 1/2: D = 1/2 (not 1, which sorting one tie
        // before the other would give).
        let t = ks_two_sample(&[1.0, 1.0], &[1.0, 2.0]).unwrap();
        assert!((t.statistic - 0.5).abs() < 1e-12, "{t:?}");
    }

    #[test]
    fn ks_exact_and_asymptotic_agree_on_large_samples() {
        // Two grids of 300, one shifted by a tenth and a half step (no value in both): the exact
        // p-value and Kolmogorov's approximation are close.
        let a: Vec<f64> = (0..300).map(|i| i as f64 / 300.0).collect();
        let b: Vec<f64> = (0..300)
            .map(|i| i as f64 / 300.0 + 0.1 + 1.0 / 600.0)
            .collect();
        let exact = ks_two_sample(&a, &b).unwrap();
        let en = 150f64;
        let lambda = (en.sqrt() + 0.12 + 0.11 / en.sqrt()) * exact.statistic;
        let approx = kolmogorov_tail(lambda);
        assert!((exact.statistic - 0.1).abs() < 1.5 / 300.0, "{exact:?}");
        assert!(
            (exact.p_value - approx).abs() < 0.02,
            "{exact:?} vs {approx}"
        );
        assert!(exact.p_value > 0.05 && exact.p_value < 0.2, "{exact:?}");
    }

    #[test]
    fn auc_on_a_known_ranking() {
        // 5 of the 6 (positive, negative) pairs are ordered right.
        assert_eq!(auc(&[0.9, 0.8, 0.3], &[0.1, 0.4]), Some(5.0 / 6.0));
        assert_eq!(auc(&[1.0, 2.0], &[3.0, 4.0]), Some(0.0));
        // A tie counts one half.
        assert_eq!(auc(&[1.0], &[1.0]), Some(0.5));
        assert_eq!(auc(&[2.0, 1.0], &[1.0, 0.0]), Some(0.875));
        assert_eq!(auc(&[], &[1.0]), None);
    }

    #[test]
    fn harmonic_mean_of_known_values() {
        assert!((harmonic_mean(&[1.0, 0.5]).unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(harmonic_mean(&[0.9, 0.0, 0.8]), Some(0.0));
        assert_eq!(harmonic_mean(&[0.25]), Some(0.25));
        assert_eq!(harmonic_mean(&[]), None);
        assert_eq!(harmonic_mean(&[-1.0]), None);
    }
}
