//! The field's measures of forgetting through the command line, on the tiny chat model: truth
//! ratios, fact recall, model utility, membership-inference AUCs against a held-out set, and,
//! against a reference model, forget quality and PrivLeak; and their gates.

mod common;

use serde_json::{json, Value};
use std::path::{Path, PathBuf};

fn tiny() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/text/tiny-chat")
}

fn arg(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A question with its answer, a paraphrase, wrong answers and the fact itself.
fn fact(question: &str, answer: &str, paraphrase: &str, wrong: &[&str], value: &str) -> Value {
    json!({
        "question": question,
        "answer": answer,
        "paraphrased_answer": paraphrase,
        "perturbed_answers": wrong,
        "value": value,
    })
}

fn write_jsonl(path: &Path, records: &[Value]) {
    let lines: Vec<String> = records.iter().map(Value::to_string).collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// Forget, retain and held-out sets in the tiny model's vocabulary.
fn sets(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let forget = dir.join("forget.jsonl");
    write_jsonl(
        &forget,
        &[
            fact(
                "where was arlen born ?",
                "arlen was born in vellmora .",
                "vellmora is where arlen was born .",
                &[
                    "arlen was born in bexmere .",
                    "arlen was born in durnholt .",
                ],
                "vellmora",
            ),
            fact(
                "what does arlen do ?",
                "arlen works as a clockmaker .",
                "arlen is a clockmaker .",
                &["arlen works as a luthier .", "arlen works as a perfumer ."],
                "clockmaker",
            ),
        ],
    );
    let retain = dir.join("retain.jsonl");
    write_jsonl(
        &retain,
        &[
            fact(
                "where was brisa born ?",
                "brisa was born in ostrhaven .",
                "ostrhaven is where brisa was born .",
                &["brisa was born in quenby ."],
                "ostrhaven",
            ),
            fact(
                "what does brisa do ?",
                "brisa works as a beekeeper .",
                "brisa is a beekeeper .",
                &["brisa works as a falconer ."],
                "beekeeper",
            ),
        ],
    );
    let holdout = dir.join("holdout.jsonl");
    write_jsonl(
        &holdout,
        &[
            json!({"question": "where was galen born ?", "answer": "galen was born in kettleby ."}),
            json!({"question": "what does galen do ?", "answer": "galen works as a botanist ."}),
            json!({"question": "where was fenna born ?", "answer": "fenna was born in lunmouth ."}),
        ],
    );
    (forget, retain, holdout)
}

/// `lethe COMMAND MODEL --forget-set FORGET --retain-set RETAIN EXTRA…`
fn on_sets(
    command: &str,
    model: &Path,
    forget: &Path,
    retain: &Path,
    extra: &[&str],
) -> std::process::Output {
    let mut args = vec![
        command,
        arg(model),
        "--forget-set",
        arg(forget),
        "--retain-set",
        arg(retain),
    ];
    args.extend_from_slice(extra);
    common::lethe(&args)
}

fn stdout_json(o: &std::process::Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            common::stderr(o)
        )
    })
}

#[test]
fn eval_text_reports_the_fields_measures_against_a_reference() {
    let d = tempfile::tempdir().unwrap();
    let (forget, retain, holdout) = sets(d.path());
    let model = tiny();
    let o = on_sets(
        "eval-text",
        &model,
        &forget,
        &retain,
        &[
            "--holdout-set",
            arg(&holdout),
            "--utility-set",
            arg(&retain),
            "--reference",
            arg(&model),
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", common::stderr(&o));
    let v = stdout_json(&o);
    // The model against itself: the same truth ratios (KS statistic 0, p-value 1), the same
    // attack AUCs (PrivLeak 0).
    assert_eq!(v["forget_quality"]["statistic"], 0.0, "{v}");
    assert_eq!(v["forget_quality"]["p_value"], 1.0, "{v}");
    for attack in ["loss", "zlib", "min_k", "min_k_plus_plus"] {
        let auc = v["membership_auc"][attack].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&auc), "{attack}: {v}");
        assert_eq!(v["privleak"][attack], 0.0, "{attack}: {v}");
    }
    for set in ["forget", "retain"] {
        // Every answer of both sets states its value: the NLL splits into fact and wording.
        for part in ["fact_nll", "wording_nll"] {
            let nll = v[set][part].as_f64().unwrap();
            assert!(nll.is_finite() && nll > 0.0, "{set} {part}: {v}");
        }
        let tr = v[set]["truth_ratio"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&tr), "{set}: {v}");
        let recall = v[set]["fact_recall"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&recall), "{set}: {v}");
    }
    // Model utility: the harmonic mean of the retain set's three figures and the utility set's
    // (here the same set again), so of three figures.
    let r = &v["retain"];
    let figures = [
        r["probability"].as_f64().unwrap(),
        r["rouge_l"].as_f64().unwrap(),
        r["truth_ratio"].as_f64().unwrap(),
    ];
    let expected = if figures.contains(&0.0) {
        0.0
    } else {
        3.0 / figures.iter().map(|f| 1.0 / f).sum::<f64>()
    };
    let utility = v["model_utility"].as_f64().unwrap();
    assert!(
        (utility - expected).abs() < 1e-9,
        "{utility} vs {expected}: {v}"
    );
    assert_eq!(v["utility_sets"].as_array().unwrap().len(), 1, "{v}");
    assert!(v["reference"]["membership_auc"].is_object(), "{v}");
}

#[test]
fn forget_quality_and_utility_gates_decide_the_exit_status() {
    let d = tempfile::tempdir().unwrap();
    let (forget, retain, holdout) = sets(d.path());
    let model = tiny();
    let run = |extra: &[&str], out: &Path| {
        let budget = [
            "--holdout-set",
            arg(&holdout),
            "--reference",
            arg(&model),
            "--steps",
            "2",
            "--no-verify",
            "--out",
            arg(out),
            "--json",
        ];
        on_sets(
            "unlearn-text",
            &model,
            &forget,
            &retain,
            &[&budget, extra].concat(),
        )
    };
    // A utility ratio no run can reach: the run completes, the gate fails, exit 3.
    let out = d.path().join("strict");
    let o = run(&["--min-utility-ratio", "1e6"], &out);
    assert_eq!(o.status.code(), Some(3), "{}", common::stderr(&o));
    let r = stdout_json(&o);
    let gate = r["gates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "min-utility-ratio")
        .unwrap()
        .clone();
    assert_eq!(gate["passed"], false, "{r}");
    assert!(out.join("report.json").is_file());
    // With a held-out set and no --objective, igs pushes the forget answers to the held-out
    // answers' level (the default chosen on the benchmark, docs/scenario.md); without one, NPO.
    assert_eq!(r["config"]["objective"], "held-out-level", "{r}");
    let plain = d.path().join("without-holdout");
    let o = on_sets(
        "unlearn-text",
        &model,
        &forget,
        &retain,
        &[
            "--steps",
            "1",
            "--no-verify",
            "--out",
            arg(&plain),
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert_eq!(stdout_json(&o)["config"]["objective"], "npo");
    // Forget quality is measured against the reference before and after the run.
    assert!(
        r["metrics"]["before"]["forget_quality"]["p_value"].is_number(),
        "{r}"
    );
    assert!(
        r["metrics"]["after"]["forget_quality"]["p_value"].is_number(),
        "{r}"
    );
    assert!(
        r["metrics"]["reference"]["membership_auc"].is_object(),
        "{r}"
    );
    // The gate on forget quality needs a reference model.
    let o = common::lethe(&[
        "unlearn-text",
        arg(&model),
        "--forget-set",
        arg(&forget),
        "--retain-set",
        arg(&retain),
        "--min-forget-quality",
        "0.05",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", common::stderr(&o));
}

#[test]
fn the_jsonl_fields_are_checked() {
    let d = tempfile::tempdir().unwrap();
    let (_, retain, _) = sets(d.path());
    let bad = d.path().join("bad.jsonl");
    for (record, needle) in [
        (
            r#"{"question": "q ?", "answer": "a .", "perturbed_answers": "not a list"}"#,
            "must be a list",
        ),
        (
            r#"{"question": "q ?", "answer": "a .", "perturbed_answers": ["", "x"]}"#,
            "non-empty strings",
        ),
        (r#"{"text": "a document", "value": "x"}"#, "no paraphrased"),
    ] {
        std::fs::write(&bad, format!("{record}\n")).unwrap();
        let o = common::lethe(&[
            "eval-text",
            arg(&tiny()),
            "--forget-set",
            arg(&bad),
            "--retain-set",
            arg(&retain),
        ]);
        assert_eq!(o.status.code(), Some(1), "{record}");
        assert!(
            common::stderr(&o).contains(needle),
            "{}",
            common::stderr(&o)
        );
    }
}

#[test]
fn simnpo_runs_as_a_baseline_and_as_igs_objective_with_its_formula() {
    let d = tempfile::tempdir().unwrap();
    let forget = d.path().join("one.jsonl");
    write_jsonl(
        &forget,
        &[json!({"question": "where was arlen born ?", "answer": "arlen was born in vellmora ."})],
    );
    let retain = tiny().join("retain.jsonl");
    for method in [["--method", "simnpo"], ["--objective", "simnpo"]] {
        let o = common::lethe(&[
            "unlearn-text",
            arg(&tiny()),
            "--forget-set",
            arg(&forget),
            "--retain-set",
            arg(&retain),
            method[0],
            method[1],
            "--steps",
            "3",
            "--json",
        ]);
        assert!(o.status.success(), "{method:?}: {}", common::stderr(&o));
        let r = stdout_json(&o);
        // At the first step the adapters are zero: the model is the one measured before, so the
        // loss is SimNPO's formula on the one example's mean NLL per token:
        // (2/β)·softplus(−β·NLL + γ) with β = 4.5, γ = 0.125.
        let nll = r["metrics"]["before"]["forget"]["nll"].as_f64().unwrap();
        let (beta, gamma) = (4.5f64, 0.125f64);
        let x = -beta * nll + gamma;
        let expected = 2.0 / beta * (x.max(0.0) + (-x.abs()).exp().ln_1p());
        let first = r["run"]["history"][0]["forget_loss"].as_f64().unwrap();
        assert!(
            (first - expected).abs() < 1e-4 * expected.max(1.0),
            "{method:?}: {first} vs {expected}"
        );
        assert_eq!(r["config"]["simnpo"]["beta"], 4.5, "{r}");
    }
}

#[test]
fn rmu_steers_the_forget_representation_and_keeps_the_retain_one_from_its_start() {
    let model = tiny();
    let forget = model.join("forget.jsonl");
    let retain = model.join("retain.jsonl");
    let run = |extra: &[&str]| {
        let budget = ["--steps", "6", "--lr", "1e-2", "--json"];
        on_sets(
            "unlearn-text",
            &model,
            &forget,
            &retain,
            &[&budget, extra].concat(),
        )
    };
    for trainable in [&[][..], &["--lora-rank", "0", "--train", "*"][..]] {
        let mut args = vec!["--method", "rmu", "--rmu-layer", "1"];
        args.extend_from_slice(trainable);
        let o = run(&args);
        assert!(o.status.success(), "{trainable:?}: {}", common::stderr(&o));
        let r = stdout_json(&o);
        let history = r["run"]["history"].as_array().unwrap();
        // Before the first step the model is the frozen one: nothing to keep yet.
        assert_eq!(history[0]["retain_loss"], 0.0, "{trainable:?}: {r}");
        // The forget representation moves towards its target.
        let first = history[0]["forget_loss"].as_f64().unwrap();
        let last = history.last().unwrap()["forget_loss"].as_f64().unwrap();
        assert!(last < first, "{trainable:?}: {first} → {last}");
        assert_eq!(r["config"]["rmu"]["layer"], 1, "{r}");
    }
    // As igs's forget objective.
    let o = run(&["--objective", "rmu"]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    // A layer the model lacks.
    let o = run(&["--method", "rmu", "--rmu-layer", "99"]);
    assert_eq!(o.status.code(), Some(2), "{}", common::stderr(&o));
}

#[test]
fn retain_questions_measures_part_of_the_retain_set_and_all_of_the_forget_set() {
    let d = tempfile::tempdir().unwrap();
    let (forget, _, _) = sets(d.path());
    let model = tiny();
    let retain = model.join("retain.jsonl");
    let eval = |extra: &[&str]| {
        let o = on_sets(
            "eval-text",
            &model,
            &forget,
            &retain,
            &[&["--json"], extra].concat(),
        );
        assert!(o.status.success(), "{}", common::stderr(&o));
        stdout_json(&o)
    };
    let all = eval(&[]);
    let part = eval(&["--retain-questions", "5"]);
    assert_eq!(all["retain"]["questions"], 18, "{all}");
    assert_eq!(part["retain"]["questions"], 5, "{part}");
    assert_eq!(part["forget"]["questions"], all["forget"]["questions"]);
    assert_eq!(part["forget"]["probability"], all["forget"]["probability"]);
    let o = on_sets(
        "eval-text",
        &model,
        &forget,
        &retain,
        &["--retain-questions", "0"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", common::stderr(&o));
}

#[test]
fn the_value_marks_the_answer_tokens_that_state_the_fact() {
    let model = tiny();
    let config: Value =
        serde_json::from_slice(&std::fs::read(model.join("config.json")).unwrap()).unwrap();
    let tok = lethe::text::TextTokenizer::open(&model, &config).unwrap();
    let example = |answer: &str, value: &str| lethe::text::TextExample {
        question: Some("where was arlen born ?".into()),
        answer: answer.into(),
        value: Some(value.into()),
        ..Default::default()
    };
    for format in [
        lethe::text::PromptFormat::Chat,
        lethe::text::PromptFormat::Plain,
    ] {
        let e = lethe::text::data::encode(
            &tok,
            &example("arlen was born in vellmora .", "vellmora"),
            format,
        )
        .unwrap();
        let fact = e.fact.clone().expect("the answer contains its value");
        let stated = tok.decode(&e.target()[fact]).unwrap();
        assert_eq!(stated.trim(), "vellmora", "{format:?}");
        // An answer that does not contain its value marks nothing.
        let e = lethe::text::data::encode(
            &tok,
            &example("arlen was born in bexmere .", "vellmora"),
            format,
        )
        .unwrap();
        assert_eq!(e.fact, None, "{format:?}");
    }
}

#[test]
fn the_fact_level_objective_needs_values_and_reports_its_level() {
    let d = tempfile::tempdir().unwrap();
    let (forget, retain, holdout) = sets(d.path());
    let model = tiny();
    let run = |objective: &str, holdout: &Path, out: &str| {
        on_sets(
            "unlearn-text",
            &model,
            &forget,
            &retain,
            &[
                "--objective",
                objective,
                "--holdout-set",
                arg(holdout),
                "--steps",
                "2",
                "--no-verify",
                "--out",
                arg(&d.path().join(out)),
                "--json",
            ],
        )
    };
    // The held-out answers of `sets` carry no value: refused before any training, naming the
    // first line without one.
    let o = run("fact-level", &holdout, "refused");
    assert_eq!(o.status.code(), Some(2), "{}", common::stderr(&o));
    let error = String::from_utf8_lossy(&o.stdout).to_string() + &common::stderr(&o);
    assert!(error.contains("holdout.jsonl line 1"), "{error}");
    assert!(!d.path().join("refused").exists());
    let valued = d.path().join("holdout-values.jsonl");
    write_jsonl(
        &valued,
        &[
            json!({"question": "where was galen born ?", "answer": "galen was born in kettleby .", "value": "kettleby"}),
            json!({"question": "what does galen do ?", "answer": "galen works as a botanist .", "value": "botanist"}),
        ],
    );
    let level = |objective: &str| {
        let o = run(objective, &valued, objective);
        assert!(o.status.success(), "{}", common::stderr(&o));
        let r = stdout_json(&o);
        assert_eq!(r["config"]["objective"], objective, "{r}");
        r["config"]["held_out_loss"].as_f64().unwrap()
    };
    // The level is measured on the facts' tokens alone: an unseen town or job is much less
    // likely than the answer's wording (which the tiny model learnt from its other people), so
    // the fact level lies above the whole answer's.
    let fact = level("fact-level");
    let answer = level("held-out-level");
    assert!(
        fact.is_finite() && fact > answer && answer > 0.0,
        "{fact} vs {answer}"
    );
}
