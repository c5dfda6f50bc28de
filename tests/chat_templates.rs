//! Chat templates as published (SmolLM2's, Qwen3's, Llama 3.2's: Python string methods, trimmed
//! blocks, namespaces, negative slices) rendered by lethe and by transformers'
//! `apply_chat_template` (fixtures/chat-templates/cases.json, made by
//! scripts/render-chat-templates.sh) give the same strings.

use lethe::text::chat_template::{render, ChatContext};
use serde_json::Value;
use std::path::Path;

fn dir() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/chat-templates"
    ))
}

#[test]
fn every_case_renders_as_transformers_renders_it() {
    let cases: Value =
        serde_json::from_slice(&std::fs::read(dir().join("cases.json")).unwrap()).unwrap();
    let cases = cases["cases"].as_array().unwrap();
    assert!(cases.len() >= 30, "{} cases", cases.len());
    let mut templates = std::collections::BTreeSet::new();
    for case in cases {
        let file = case["template"].as_str().unwrap();
        templates.insert(file);
        let template = std::fs::read_to_string(dir().join(file)).unwrap();
        let context = ChatContext {
            bos_token: case["bos_token"].as_str().map(str::to_string),
            eos_token: case["eos_token"].as_str().map(str::to_string),
            add_generation_prompt: case["add_generation_prompt"].as_bool().unwrap(),
            extra: case["extra"].as_object().unwrap().clone(),
        };
        let messages = case["messages"].as_array().unwrap();
        let got = render(&template, messages, &context)
            .unwrap_or_else(|e| panic!("{file} {}: {e}", case["conversation"]));
        assert_eq!(
            got,
            case["expected"].as_str().unwrap(),
            "{file}, {}, add_generation_prompt {}, extra {}",
            case["conversation"],
            context.add_generation_prompt,
            case["extra"]
        );
    }
    assert_eq!(templates.len(), 3, "{templates:?}");
}

#[test]
fn without_a_date_llama_reads_todays() {
    let template = std::fs::read_to_string(dir().join("llama-3.2.jinja")).unwrap();
    let messages = [serde_json::json!({"role": "user", "content": "hi"})];
    let got = render(&template, &messages, &ChatContext::default()).unwrap();
    let line = got
        .lines()
        .find_map(|l| l.strip_prefix("Today Date: "))
        .unwrap();
    // "%d %b %Y": two digits, a month's abbreviation, four digits; never the template's fallback.
    let parts: Vec<&str> = line.split(' ').collect();
    assert_eq!(parts.len(), 3, "{line:?}");
    assert!(
        parts[0].len() == 2 && parts[0].parse::<u32>().is_ok(),
        "{line:?}"
    );
    assert!(
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
            .contains(&parts[1]),
        "{line:?}"
    );
    assert!(
        parts[2].len() == 4 && parts[2].parse::<u32>().is_ok(),
        "{line:?}"
    );
    assert_ne!(line, "26 Jul 2024");
}
