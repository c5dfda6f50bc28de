//! Checkpoint reading and writing: round trips (single file, shards, f16/bf16), untouched
//! tensors byte-identical, and malformed inputs refused with a clear error.

mod common;

use candle_core::{DType, Device, Tensor};
use lethe::arch::Classifier;
use lethe::checkpoint::{write_edited, Checkpoint, OutputDir};
use std::collections::BTreeMap;
use std::path::Path;

fn tiny(dir: &Path, dtype: safetensors::Dtype) -> Checkpoint {
    common::write_model(dir, &common::mlp_config([1, 4, 4], 3), 7, dtype);
    Checkpoint::open(dir).unwrap()
}

/// Splits a single-file checkpoint into two shards with an index.
fn shard(dir: &Path) {
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names = st.names();
    names.sort();
    let (first, second) = names.split_at(names.len() / 2);
    let mut weight_map = serde_json::Map::new();
    for (i, part) in [first, second].iter().enumerate() {
        let file = format!("model-0000{}-of-00002.safetensors", i + 1);
        let views: Vec<(&str, safetensors::tensor::TensorView)> =
            part.iter().map(|n| (*n, st.tensor(n).unwrap())).collect();
        let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
        std::fs::write(
            dir.join(&file),
            safetensors::serialize(views, Some(meta)).unwrap(),
        )
        .unwrap();
        for n in part.iter() {
            weight_map.insert(n.to_string(), serde_json::Value::String(file.clone()));
        }
    }
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    let index = serde_json::json!({"metadata": {"total_size": 0}, "weight_map": weight_map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
}

fn raw_tensor_bytes(dir: &Path) -> BTreeMap<String, (String, Vec<usize>, Vec<u8>)> {
    let ckpt = Checkpoint::open(dir).unwrap();
    let mut out = BTreeMap::new();
    for shard in &ckpt.shards {
        for name in shard.names() {
            let info = shard.info(&name).unwrap();
            out.insert(
                name.clone(),
                (
                    format!("{:?}", info.dtype),
                    info.shape.clone(),
                    shard.bytes(&name).unwrap().to_vec(),
                ),
            );
        }
    }
    out
}

fn edit_and_check(input: &Path, dtype_name: &str) {
    let ckpt = Checkpoint::open(input).unwrap();
    std::fs::write(input.join("tokenizer_notes.txt"), "kept as is").unwrap();
    let before_files = common::snapshot(input);
    let new_head = Tensor::ones(
        ckpt.shape("classifier.bias").unwrap(),
        candle_core::DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    let updated = BTreeMap::from([("classifier.bias".to_string(), new_head)]);
    let out_root = tempfile::tempdir().unwrap();
    let out = out_root.path().join("edited");
    let dir = OutputDir::create(&out, &[input], false).unwrap();
    write_edited(&ckpt, &updated, dir.path(), &|_| false).unwrap();
    dir.commit().unwrap();

    assert_eq!(common::snapshot(input), before_files, "the input changed");
    let a = raw_tensor_bytes(input);
    let b = raw_tensor_bytes(&out);
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (name, (dtype, shape, bytes)) in &a {
        let (dtype2, shape2, bytes2) = &b[name];
        assert_eq!(dtype, dtype2, "{name}: dtype changed");
        assert_eq!(dtype, dtype_name);
        assert_eq!(shape, shape2);
        if name == "classifier.bias" {
            assert_ne!(bytes, bytes2, "the edit was not written");
        } else {
            assert_eq!(bytes, bytes2, "{name}: untouched tensor changed");
        }
    }
    let edited = Checkpoint::open(&out).unwrap();
    let bias: Vec<f32> = edited
        .load_f32("classifier.bias", &Device::Cpu)
        .unwrap()
        .to_vec1()
        .unwrap();
    assert!(bias.iter().all(|&v| v == 1.0));
    for shard in &edited.shards {
        assert_eq!(
            shard
                .user_metadata()
                .and_then(|m| m.get("format"))
                .map(String::as_str),
            Some("pt")
        );
    }
    assert_eq!(
        std::fs::read_to_string(out.join("tokenizer_notes.txt")).unwrap(),
        "kept as is"
    );
    assert!(out.join("config.json").is_file());
}

#[test]
fn single_file_round_trip_keeps_untouched_bytes() {
    let d = tempfile::tempdir().unwrap();
    tiny(d.path(), safetensors::Dtype::F32);
    edit_and_check(d.path(), "F32");
}

#[test]
fn sharded_bf16_round_trip() {
    let d = tempfile::tempdir().unwrap();
    tiny(d.path(), safetensors::Dtype::BF16);
    shard(d.path());
    let ckpt = Checkpoint::open(d.path()).unwrap();
    assert_eq!(ckpt.shards.len(), 2);
    edit_and_check(d.path(), "BF16");
    // The output keeps the shard layout and index.
}

#[test]
fn f16_weights_load_close_to_their_f32_values() {
    let d32 = tempfile::tempdir().unwrap();
    let d16 = tempfile::tempdir().unwrap();
    let c32 = tiny(d32.path(), safetensors::Dtype::F32);
    let c16 = tiny(d16.path(), safetensors::Dtype::F16);
    let a: Vec<f32> = c32
        .load_f32("layers.0.weight", &Device::Cpu)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let b: Vec<f32> = c16
        .load_f32("layers.0.weight", &Device::Cpu)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-3, "{worst}");
}

fn open_err(dir: &Path) -> String {
    match Checkpoint::open(dir) {
        Ok(ckpt) => match Classifier::from_config(&ckpt.config) {
            Ok(c) => c
                .load_params(&ckpt, &Device::Cpu)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default(),
            Err(e) => e.to_string(),
        },
        Err(e) => e.to_string(),
    }
}

#[test]
fn truncated_safetensors_is_refused() {
    let d = tempfile::tempdir().unwrap();
    tiny(d.path(), safetensors::Dtype::F32);
    let path = d.path().join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
    let e = open_err(d.path());
    assert!(e.contains("truncated"), "{e}");
    std::fs::write(&path, &bytes[..5]).unwrap();
    let e = open_err(d.path());
    assert!(e.contains("invalid safetensors"), "{e}");
}

#[test]
fn header_that_lies_about_offsets_is_refused() {
    let d = tempfile::tempdir().unwrap();
    tiny(d.path(), safetensors::Dtype::F32);
    let path = d.path().join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(bytes[8..8 + n].to_vec()).unwrap();
    // Shift the first tensor's end offset: sizes no longer match dtype × shape.
    let mut json: serde_json::Value = serde_json::from_str(&header).unwrap();
    let first = json
        .as_object()
        .unwrap()
        .keys()
        .find(|k| *k != "__metadata__")
        .unwrap()
        .clone();
    let end = json[&first]["data_offsets"][1].as_u64().unwrap();
    json[&first]["data_offsets"][1] = serde_json::Value::from(end + 4);
    let mut new_header = serde_json::to_string(&json).unwrap();
    while new_header.len() < n {
        new_header.push(' ');
    }
    let mut forged = (new_header.len() as u64).to_le_bytes().to_vec();
    forged.extend_from_slice(new_header.as_bytes());
    forged.extend_from_slice(&bytes[8 + n..]);
    std::fs::write(&path, forged).unwrap();
    let e = open_err(d.path());
    assert!(e.contains("invalid safetensors"), "{e}");
}

#[test]
fn config_and_weights_that_disagree_on_shapes_are_refused() {
    let d = tempfile::tempdir().unwrap();
    tiny(d.path(), safetensors::Dtype::F32);
    let mut config = common::mlp_config([1, 4, 4], 3);
    config["hidden_sizes"] = serde_json::json!([20, 12]);
    std::fs::write(d.path().join("config.json"), config.to_string()).unwrap();
    let e = open_err(d.path());
    assert!(
        e.contains("layers.0.weight") && e.contains("[20, 16]") && e.contains("[16, 16]"),
        "{e}"
    );
}

#[test]
fn unknown_model_type_is_refused() {
    let d = tempfile::tempdir().unwrap();
    tiny(d.path(), safetensors::Dtype::F32);
    let mut config = common::mlp_config([1, 4, 4], 3);
    config["model_type"] = serde_json::json!("resnet9000");
    std::fs::write(d.path().join("config.json"), config.to_string()).unwrap();
    let e = open_err(d.path());
    assert!(
        e.contains("unknown model_type \"resnet9000\"") && e.contains("lethe_mlp"),
        "{e}"
    );
}

#[test]
fn index_naming_a_file_outside_the_directory_is_refused() {
    let d = tempfile::tempdir().unwrap();
    tiny(d.path(), safetensors::Dtype::F32);
    shard(d.path());
    let index = serde_json::json!({"weight_map": {"layers.0.weight": "../evil.safetensors"}});
    std::fs::write(
        d.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    let e = open_err(d.path());
    assert!(e.contains("not a plain file name"), "{e}");
}

#[test]
fn writing_into_the_input_directory_is_refused() {
    let d = tempfile::tempdir().unwrap();
    tiny(d.path(), safetensors::Dtype::F32);
    let e = OutputDir::create(d.path(), &[d.path()], true)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("never writes into its inputs"), "{e}");
    let e = OutputDir::create(&d.path().join("sub"), &[d.path()], true)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("never writes into its inputs"), "{e}");
}

#[test]
fn an_uncommitted_output_leaves_nothing_behind() {
    let root = tempfile::tempdir().unwrap();
    let target = root.path().join("out");
    {
        let dir = OutputDir::create(&target, &[], false).unwrap();
        dir.write_file("partial.bin", b"half").unwrap();
        // Dropped without commit, as on an error.
    }
    assert!(!target.exists());
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
}

#[test]
fn an_existing_empty_output_directory_is_filled_without_overwrite() {
    let root = tempfile::tempdir().unwrap();
    let target = root.path().join("out");
    std::fs::create_dir(&target).unwrap();
    let dir = OutputDir::create(&target, &[], false).unwrap();
    dir.write_file("a.txt", b"x").unwrap();
    dir.commit().unwrap();
    assert_eq!(std::fs::read(target.join("a.txt")).unwrap(), b"x");
}

/// A tensor read in a dtype other than f32 holds the f32 values rounded once: bf16 stored and
/// bf16 asked for (read as stored) gives the same bits as f32 stored and rounded to bf16, and
/// bf16 read as f32 is exact.
#[test]
fn tensors_load_in_the_dtype_asked_for() {
    let d16 = tempfile::tempdir().unwrap();
    let c16 = tiny(d16.path(), safetensors::Dtype::BF16);
    for name in c16.tensor_names() {
        let held = c16.load_as(name, DType::BF16, &Device::Cpu).unwrap();
        assert_eq!(held.dtype(), DType::BF16, "{name}");
        let f32s = c16.load_f32(name, &Device::Cpu).unwrap();
        let via_f32 = f32s.to_dtype(DType::BF16).unwrap();
        let bits =
            |t: &candle_core::Tensor| t.flatten_all().unwrap().to_vec1::<half::bf16>().unwrap();
        assert_eq!(bits(&held), bits(&via_f32), "{name}");
        let f32_again = c16.load_as(name, DType::F32, &Device::Cpu).unwrap();
        assert_eq!(f32_again.dtype(), DType::F32);
        assert_eq!(
            f32_again.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            f32s.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
    }
}
