//! The trainable set: which checkpoint tensors an unlearning run may change. Everything else is
//! frozen: loaded as plain tensors that no optimizer ever sees.

use crate::error::{Error, Result};
use crate::nn::{ParamSpec, Params};
use candle_core::Var;

pub struct TrainableSet {
    pub names: Vec<String>,
    pub vars: Vec<Var>,
}

impl TrainableSet {
    pub fn num_elements(&self) -> usize {
        self.vars.iter().map(|v| v.elem_count()).sum()
    }
}

/// Whether the patterns select `spec` to train: it matches a `train` pattern and no `freeze`
/// pattern, and is not a buffer.
pub fn is_selected(spec: &ParamSpec, train: &[String], freeze: &[String]) -> bool {
    !spec.is_buffer
        && train.iter().any(|p| glob_match(p, &spec.name))
        && !freeze.iter().any(|p| glob_match(p, &spec.name))
}

/// Selects trainable parameters by glob patterns over their names (`*` any run of characters,
/// `?` one character): a parameter trains when it matches a `train` pattern and no `freeze`
/// pattern. Buffers never train. Turns the selected entries of `params` into `Var`s.
pub fn select(
    params: &mut Params,
    specs: &[ParamSpec],
    train: &[String],
    freeze: &[String],
) -> Result<TrainableSet> {
    for pattern in train.iter().chain(freeze) {
        if !specs.iter().any(|s| glob_match(pattern, &s.name)) {
            let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
            return Err(Error::Selection(format!(
                "pattern {pattern:?} matches no parameter; the model's parameters are: {}",
                names.join(", ")
            )));
        }
    }
    let mut set = TrainableSet {
        names: Vec::new(),
        vars: Vec::new(),
    };
    for spec in specs {
        if is_selected(spec, train, freeze) {
            let var = Var::from_tensor(params.get(&spec.name)?)?;
            params.insert(spec.name.clone(), var.as_tensor().clone());
            set.names.push(spec.name.clone());
            set.vars.push(var);
        }
    }
    if set.vars.is_empty() {
        return Err(Error::Selection(
            "the trainable set is empty: the train and freeze patterns leave nothing to train"
                .into(),
        ));
    }
    Ok(set)
}

pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Iterative matcher with backtracking to the last `*`.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs() {
        assert!(glob_match("*", "layers.0.weight"));
        assert!(glob_match("layers.*.weight", "layers.10.weight"));
        assert!(glob_match("classifier.*", "classifier.bias"));
        assert!(!glob_match("classifier.*", "layers.0.bias"));
        assert!(glob_match("layers.?.bias", "layers.1.bias"));
        assert!(!glob_match("layers.?.bias", "layers.12.bias"));
        assert!(glob_match("*bias", "x.bias"));
        assert!(!glob_match("", "x"));
    }
}
