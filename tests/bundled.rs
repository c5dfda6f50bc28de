//! Acceptance on the bundled model and data: it is trained to convergence, and the default
//! method, with no tuning flags, forgets a class (and a random 10 %) the way the README's
//! tables report.

use std::process::Command;

const MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/fashion-mnist-mlp");
const CNN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/fashion-mnist-cnn");
const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/fashion-mnist");

fn lethe_json(args: &[&str]) -> serde_json::Value {
    let o = Command::new(env!("CARGO_BIN_EXE_lethe"))
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// RA and TA of `model` when it "forgets" nothing of consequence (one sample): its training and
/// test accuracy.
fn accuracies(model: &str) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("one.txt");
    std::fs::write(&list, "0").unwrap();
    let r = lethe_json(&[
        "eval",
        model,
        "--data",
        DATA,
        "--forget-indices",
        list.to_str().unwrap(),
    ]);
    let m = &r["metrics"];
    (m["ra"].as_f64().unwrap(), m["ta"].as_f64().unwrap())
}

#[test]
fn the_bundled_models_are_trained_to_convergence() {
    let (ra, ta) = accuracies(MODEL);
    assert!(ra >= 98.0 && ta >= 86.0, "MLP: training {ra}, test {ta}");
    // The CNN generalises better and fits less (15 epochs with a cosine decay; its card).
    let (ra, ta) = accuracies(CNN);
    assert!(ra >= 94.0 && ta >= 88.5, "CNN: training {ra}, test {ta}");
}

#[test]
fn default_igs_forgets_a_class_within_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let r = lethe_json(&[
        "unlearn",
        MODEL,
        "--data",
        DATA,
        "--forget-class",
        "Dress",
        "--out",
        out.to_str().unwrap(),
    ]);
    let (before, after) = (&r["metrics"]["before"], &r["metrics"]["after"]);
    let f = |m: &serde_json::Value, k: &str| m[k].as_f64().unwrap();
    assert!(f(after, "ua") >= 99.0, "UA {}", after["ua"]);
    assert!(f(after, "mia") >= 95.0, "MIA {}", after["mia"]);
    assert!(
        f(before, "ta") - f(after, "ta") <= 1.5,
        "TA {} → {}",
        before["ta"],
        after["ta"]
    );
    assert_eq!(r["verification"]["passed"], true);
}

#[test]
fn default_igs_forgets_random_samples_within_a_point_of_a_retrained_model() {
    let dir = tempfile::tempdir().unwrap();
    let retrained = dir.path().join("retrained");
    // The bundled model's recipe, on the retain set only.
    lethe_json(&[
        "train",
        "--data",
        DATA,
        "--epochs",
        "60",
        "--forget-fraction",
        "0.1",
        "--out",
        retrained.to_str().unwrap(),
    ]);
    let r = lethe_json(&[
        "unlearn",
        MODEL,
        "--data",
        DATA,
        "--forget-fraction",
        "0.1",
        "--reference",
        retrained.to_str().unwrap(),
    ]);
    // No tuning flags: the defaults for forgetting samples.
    assert_eq!(r["config"]["optimizer"]["kind"], "adamw");
    assert_eq!(r["config"]["lr_schedule"], "cosine");
    let gap = r["metrics"]["gap_to_reference_after"].as_f64().unwrap();
    let gap_before = r["metrics"]["gap_to_reference_before"].as_f64().unwrap();
    assert!(gap <= 1.0, "gap to the retrained model {gap}");
    assert!(gap < gap_before);
}
