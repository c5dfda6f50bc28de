//! The benchmark generator (scripts/make-benchmark.py): deterministic per seed, every record
//! carrying what the field's measures need, splits of whole people that nest and cover the
//! taught facts, held-out people never taught.

use lethe::text::data::read_jsonl;
use lethe::text::forgetting::states;
use lethe::text::TextExample;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

fn generate(out: &Path, seed: u64) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/make-benchmark.py");
    let o = Command::new("python3")
        .arg(&script)
        .arg(out)
        .args(["--people", "40", "--seed", &seed.to_string()])
        .output()
        .expect("python3 runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

fn questions(examples: &[TextExample]) -> BTreeSet<String> {
    examples
        .iter()
        .map(|e| e.question.clone().unwrap())
        .collect()
}

#[test]
fn the_generator_is_deterministic_per_seed_and_its_splits_hold() {
    let d = tempfile::tempdir().unwrap();
    let (a, b, c) = (d.path().join("a"), d.path().join("b"), d.path().join("c"));
    generate(&a, 0);
    generate(&b, 0);
    generate(&c, 1);
    assert_eq!(files(&a), files(&b), "same seed, other output");
    assert_ne!(files(&a), files(&c), "another seed, the same output");

    let all = read_jsonl(&a.join("all.jsonl")).unwrap();
    assert_eq!(all.len(), 400);
    for ex in &all {
        let value = ex.value.as_deref().unwrap();
        assert!(states(&ex.answer, value), "{ex:?}");
        assert!(
            states(ex.paraphrased_answer.as_deref().unwrap(), value),
            "{ex:?}"
        );
        assert_eq!(ex.perturbed_answers.len(), 3, "{ex:?}");
        // Perturbed answers are the paraphrase with another value (TOFU's form): the truth ratio
        // then compares facts, not the taught wording against another.
        let paraphrase = ex.paraphrased_answer.as_deref().unwrap();
        let (before, after) = paraphrase.split_once(value).unwrap();
        for wrong in &ex.perturbed_answers {
            assert!(
                !states(wrong, value),
                "a perturbed answer states the fact: {ex:?}"
            );
            assert!(
                wrong.starts_with(before) && wrong.ends_with(after),
                "a perturbed answer is not in the paraphrase's form: {ex:?}"
            );
        }
    }
    let taught = questions(&all);
    let holdout = questions(&read_jsonl(&a.join("holdout.jsonl")).unwrap());
    assert_eq!(holdout.len(), 40);
    assert!(taught.is_disjoint(&holdout), "a held-out fact was taught");
    let mut smaller = BTreeSet::new();
    for (percent, facts) in [(1, 10), (5, 20), (10, 40)] {
        let forget = questions(&read_jsonl(&a.join(format!("forget{percent:02}.jsonl"))).unwrap());
        let retain = questions(&read_jsonl(&a.join(format!("retain{percent:02}.jsonl"))).unwrap());
        assert_eq!(forget.len(), facts, "forget{percent:02}");
        assert!(forget.is_disjoint(&retain));
        assert_eq!(
            forget.union(&retain).cloned().collect::<BTreeSet<_>>(),
            taught
        );
        assert!(smaller.is_subset(&forget), "the splits do not nest");
        smaller = forget;
    }
}
