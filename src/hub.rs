//! Pulling checkpoints from a Hugging Face hub (`lethe pull`, or a hub id wherever a model is
//! expected). The cache is the standard one shared with Python's huggingface_hub
//! (`models--org--name/{blobs,refs,snapshots}`), and the usual environment applies: HF_ENDPOINT,
//! HF_TOKEN, HF_HOME, HF_HUB_CACHE, HF_HUB_OFFLINE.
//!
//! lethe downloads only what a checkpoint needs (config, safetensors weights — through the index
//! when sharded — and small metadata files), checks every LFS file against the hub's SHA-256
//! ETag, never fetches pickle-based weights, and refuses repository file names that would leave
//! the snapshot directory.

use crate::checkpoint::{self, is_plain_file_name};
use crate::error::{Error, Result};
use crate::unlearn::trainable::glob_match;
use hf_hub::api::sync::{ApiBuilder, ApiRepo};
use hf_hub::api::Progress;
use hf_hub::{Cache, Repo, RepoType};
use std::path::{Path, PathBuf};

const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Metadata files fetched along with the weights when the repository has them.
const METADATA_FILES: &[&str] = &[
    checkpoint::CONFIG_FILE,
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    crate::text::tokenizer::CHAT_TEMPLATE_FILE,
    "vocab.txt",
    "merges.txt",
    "preprocessor_config.json",
    "README.md",
];

/// Weights that are Python pickles: loading them can run arbitrary code.
fn is_pickle(name: &str) -> bool {
    let lower = name.to_lowercase();
    [".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle"]
        .iter()
        .any(|ext| lower.ends_with(ext))
}

/// `org/name` or `org/name@revision`.
#[derive(Clone, Debug, PartialEq)]
pub struct HubId {
    pub repo: String,
    pub revision: String,
}

impl HubId {
    pub fn parse(s: &str) -> Option<HubId> {
        let (repo, revision) = match s.split_once('@') {
            Some((r, rev)) => (r, rev),
            None => (s, "main"),
        };
        let (org, name) = repo.split_once('/')?;
        let ok = |part: &str| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        let rev_ok = !revision.is_empty()
            && !revision
                .split('/')
                .any(|p| p.is_empty() || p == "." || p == "..")
            && revision
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
        (ok(org) && ok(name) && rev_ok).then(|| HubId {
            repo: repo.to_string(),
            revision: revision.to_string(),
        })
    }

    fn repo(&self) -> Repo {
        Repo::with_revision(self.repo.clone(), RepoType::Model, self.revision.clone())
    }

    /// The repository's folder in the cache.
    pub fn cache_folder(&self, cache: &Path) -> PathBuf {
        cache.join(self.repo().folder_name())
    }
}

/// The hub settings read from the environment, as huggingface_hub reads them.
#[derive(Clone, Debug)]
pub struct HubEnv {
    pub endpoint: String,
    pub cache: PathBuf,
    pub token: Option<String>,
    pub offline: bool,
    /// False when HF_HUB_DISABLE_PROGRESS_BARS is set: downloads draw no progress bars.
    pub progress_bars: bool,
}

impl HubEnv {
    pub fn from_env() -> HubEnv {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let flag = |k: &str| {
            var(k)
                .map(|v| matches!(v.to_lowercase().as_str(), "1" | "true" | "yes" | "on"))
                .unwrap_or(false)
        };
        // HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface.
        let home = var("HF_HOME").map(PathBuf::from).unwrap_or_else(|| {
            var("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    std::env::var_os("HOME")
                        .map(PathBuf::from)
                        .unwrap_or_else(|| PathBuf::from("."))
                        .join(".cache")
                })
                .join("huggingface")
        });
        let cache = var("HF_HUB_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join("hub"));
        // HF_TOKEN, else the token file: HF_TOKEN_PATH, else HF_HOME/token.
        let token_file = var("HF_TOKEN_PATH")
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join("token"));
        let token = var("HF_TOKEN").or_else(|| {
            std::fs::read_to_string(token_file)
                .ok()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
        });
        HubEnv {
            endpoint: var("HF_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.to_string()),
            cache,
            token,
            offline: flag("HF_HUB_OFFLINE"),
            progress_bars: !flag("HF_HUB_DISABLE_PROGRESS_BARS"),
        }
    }
}

/// How an adapter names the base model given as `arg`: an existing path made absolute, else a
/// hub id's repository with the revision given after `@`, if any.
pub fn base_model(arg: &Path) -> crate::unlearn::lora::BaseModel {
    use crate::unlearn::lora::BaseModel;
    if arg.exists() {
        let path = std::path::absolute(arg).unwrap_or_else(|_| arg.to_path_buf());
        return BaseModel {
            name_or_path: path.display().to_string(),
            revision: None,
        };
    }
    let text = arg.display().to_string();
    match HubId::parse(&text) {
        Some(id) => BaseModel {
            name_or_path: id.repo,
            revision: text.contains('@').then_some(id.revision),
        },
        None => BaseModel {
            name_or_path: text,
            revision: None,
        },
    }
}

/// A model argument: an existing directory as it is, else a hub id pulled into the cache.
pub fn resolve_model(arg: &Path, progress: bool) -> Result<PathBuf> {
    if arg.is_dir() {
        return Ok(arg.to_path_buf());
    }
    match arg.to_str().and_then(HubId::parse) {
        Some(id) if !arg.exists() => pull(&id, &HubEnv::from_env(), progress).map_err(|e| {
            Error::Hub(format!(
                "{}: no such directory, and pulling it as a hub id failed: {e}",
                arg.display()
            ))
        }),
        _ => Err(Error::Checkpoint {
            path: arg.to_path_buf(),
            reason: "not a directory, and not a hub id of the form org/name[@revision]".into(),
        }),
    }
}

fn hub_error(id: &HubId, env: &HubEnv, e: hf_hub::api::sync::ApiError) -> Error {
    use hf_hub::api::sync::ApiError;
    let msg = match &e {
        ApiError::RequestError(inner) => match inner.as_ref() {
            ureq::Error::Status(401 | 403, _) => format!(
                "{}: access denied; the repository is private or gated: set HF_TOKEN to a token that may read it",
                id.repo
            ),
            ureq::Error::Status(404, _) => format!(
                "{}@{}: no such repository, revision or file on {}",
                id.repo, id.revision, env.endpoint
            ),
            ureq::Error::Status(code, _) => format!("{}: the hub answered HTTP {code}", id.repo),
            ureq::Error::Transport(t) => format!(
                "cannot reach {} ({t}); set HF_HUB_OFFLINE=1 to use only the local cache",
                env.endpoint
            ),
        },
        other => format!("{}: {other}", id.repo),
    };
    Error::Hub(msg)
}

/// Which repository files a pull fetches, by glob (`*` any run of characters, `?` one), as
/// `hf download --include/--exclude` chooses them.
#[derive(Clone, Debug, Default)]
pub struct FileFilter {
    /// Fetch exactly the files matching one of these (none: the checkpoint's files); pickle
    /// files never.
    pub include: Vec<String>,
    /// Leave out the files matching one of these.
    pub exclude: Vec<String>,
}

impl FileFilter {
    fn keeps(&self, name: &str) -> bool {
        !self.exclude.iter().any(|p| glob_match(p, name))
    }
}

/// Downloads (or finds in the cache) the checkpoint files of `id`; returns the snapshot directory.
pub fn pull(id: &HubId, env: &HubEnv, progress: bool) -> Result<PathBuf> {
    pull_files(id, env, &FileFilter::default(), progress)
}

/// Downloads (or finds in the cache) the files of `id` that `filter` chooses; returns the
/// snapshot directory.
pub fn pull_files(
    id: &HubId,
    env: &HubEnv,
    filter: &FileFilter,
    progress: bool,
) -> Result<PathBuf> {
    let progress = progress && env.progress_bars;
    if env.offline {
        return cached_snapshot(id, env);
    }
    let api = ApiBuilder::from_cache(Cache::new(env.cache.clone()))
        .with_endpoint(env.endpoint.clone())
        .with_token(env.token.clone())
        .with_progress(false)
        .build()
        .map_err(|e| hub_error(id, env, e))?;
    let repo = api.repo(id.repo());
    let info = repo.info().map_err(|e| hub_error(id, env, e))?;
    if !is_commit_hash(&info.sha) {
        return Err(Error::Hub(format!(
            "{}: the hub gave an invalid commit id {:?}",
            id.repo, info.sha
        )));
    }
    let names: Vec<String> = info.siblings.iter().map(|s| s.rfilename.clone()).collect();
    for name in &names {
        if !is_safe_repo_path(name) {
            return Err(Error::Hub(format!(
                "{}: refusing repository file name {name:?}: it would escape the download directory",
                id.repo
            )));
        }
    }
    let snapshot = id
        .cache_folder(&env.cache)
        .join("snapshots")
        .join(&info.sha);
    let wanted: Vec<String> = if filter.include.is_empty() {
        checkpoint_files(&repo, id, env, &names, &snapshot, progress)?
    } else {
        names
            .iter()
            .filter(|n| filter.include.iter().any(|p| glob_match(p, n)) && !is_pickle(n))
            .cloned()
            .collect()
    };
    let wanted: Vec<&String> = wanted.iter().filter(|n| filter.keeps(n)).collect();
    if wanted.is_empty() {
        return Err(Error::Usage(format!(
            "{}: no file of the repository is left to fetch by --include and --exclude",
            id.repo
        )));
    }
    for name in wanted {
        crate::interrupt::check()?;
        fetch(&repo, id, env, name, &snapshot, progress)?;
    }
    // Point the revision at this commit even when every file was already cached.
    Cache::new(env.cache.clone())
        .repo(id.repo())
        .create_ref(&info.sha)
        .map_err(|e| Error::io(&env.cache, e))?;
    Ok(snapshot)
}

/// The files a checkpoint needs: its metadata and its safetensors weights (the shards its
/// index names, fetched first to read them).
fn checkpoint_files(
    repo: &ApiRepo,
    id: &HubId,
    env: &HubEnv,
    names: &[String],
    snapshot: &Path,
    progress: bool,
) -> Result<Vec<String>> {
    let mut wanted: Vec<String> = METADATA_FILES
        .iter()
        .filter(|f| names.iter().any(|n| n == *f))
        .map(|f| f.to_string())
        .collect();
    if !wanted.iter().any(|f| f == checkpoint::CONFIG_FILE) {
        return Err(Error::Hub(format!(
            "{}: the repository has no config.json",
            id.repo
        )));
    }
    if names.iter().any(|n| n == checkpoint::INDEX_FILE) {
        let index = fetch(repo, id, env, checkpoint::INDEX_FILE, snapshot, progress)?;
        let shards: std::collections::BTreeSet<String> =
            checkpoint::read_index(&index)?.into_values().collect();
        for shard in &shards {
            if !is_plain_file_name(shard) || !names.contains(shard) {
                return Err(Error::Hub(format!(
                    "{}: the index names shard {shard:?}, which is not a file of the repository",
                    id.repo
                )));
            }
        }
        wanted.extend(shards);
    } else if names.iter().any(|n| n == checkpoint::SINGLE_FILE) {
        wanted.push(checkpoint::SINGLE_FILE.to_string());
    } else if names.iter().any(|n| is_pickle(n)) {
        return Err(Error::Hub(format!(
            "{}: the repository has only pickle-based weights ({}); lethe never executes code from a checkpoint and reads safetensors only",
            id.repo,
            names.iter().filter(|n| is_pickle(n)).cloned().collect::<Vec<_>>().join(", ")
        )));
    } else {
        return Err(Error::Hub(format!(
            "{}: the repository has no safetensors weights",
            id.repo
        )));
    }
    Ok(wanted)
}

/// One file into the snapshot: skipped when the snapshot already holds it, else downloaded and,
/// for LFS files, checked against the SHA-256 the hub announced.
fn fetch(
    repo: &ApiRepo,
    id: &HubId,
    env: &HubEnv,
    name: &str,
    snapshot: &Path,
    progress: bool,
) -> Result<PathBuf> {
    let target = snapshot.join(name);
    if target.is_file() {
        return Ok(target);
    }
    preflight(repo, id, env, name)?;
    let path = if progress {
        repo.download_with_progress(name, FileProgress::new())
    } else {
        repo.download_with_progress(name, ())
    }
    .map_err(|e| hub_error(id, env, e))?;
    let blob = std::fs::canonicalize(&path).map_err(|e| Error::io(&path, e))?;
    let etag = blob
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if etag.len() == 64 && etag.chars().all(|c| c.is_ascii_hexdigit()) {
        let actual = crate::digest::sha256_file(&blob)?;
        if !actual.eq_ignore_ascii_case(&etag) {
            // Leave nothing of the bad download behind.
            let _ = std::fs::remove_file(&path);
            let _ = std::fs::remove_file(&blob);
            return Err(Error::Hub(format!(
                "{}: {name} does not match the hub's SHA-256 (expected {etag}, got {actual}); the download was discarded",
                id.repo
            )));
        }
    }
    if path != target {
        return Err(Error::Hub(format!(
            "{}: {name} landed at {} instead of the snapshot {}",
            id.repo,
            path.display(),
            snapshot.display()
        )));
    }
    Ok(path)
}

/// Reads a file's headers before hf-hub does, because hf-hub names cache files after them: an
/// ETag or commit id from a hostile server must not become a path outside the cache.
fn preflight(repo: &ApiRepo, id: &HubId, env: &HubEnv, name: &str) -> Result<()> {
    let url = repo.url(name);
    let mut request = ureq::AgentBuilder::new()
        .redirects(0)
        .build()
        .get(&url)
        .set("Range", "bytes=0-0");
    if let Some(token) = &env.token {
        request = request.set("Authorization", &format!("Bearer {token}"));
    }
    let response = match request.call() {
        Ok(r) => r,
        Err(ureq::Error::Status(code, r)) if (300..400).contains(&code) => r,
        Err(e) => {
            return Err(hub_error(
                id,
                env,
                hf_hub::api::sync::ApiError::RequestError(Box::new(e)),
            ))
        }
    };
    let etag = response
        .header("x-linked-etag")
        .or_else(|| response.header("etag"))
        .unwrap_or("")
        .replace('"', "");
    let commit = response.header("x-repo-commit").unwrap_or("");
    let plain = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !plain(&etag) || !is_commit_hash(commit) {
        return Err(Error::Hub(format!(
            "{}: {name}: the hub sent a malformed ETag {etag:?} or commit id {commit:?}",
            id.repo
        )));
    }
    Ok(())
}

/// The cached snapshot of `id` without touching the network.
fn cached_snapshot(id: &HubId, env: &HubEnv) -> Result<PathBuf> {
    let folder = id.cache_folder(&env.cache);
    let commit = if is_commit_hash(&id.revision) {
        id.revision.clone()
    } else {
        let r = folder.join("refs").join(&id.revision);
        std::fs::read_to_string(&r)
            .map_err(|_| {
                Error::Hub(format!(
                    "{}@{} is not in the cache {} and HF_HUB_OFFLINE is set",
                    id.repo,
                    id.revision,
                    env.cache.display()
                ))
            })?
            .trim()
            .to_string()
    };
    if !is_commit_hash(&commit) {
        return Err(Error::Hub(format!(
            "{}: the cached ref is corrupt",
            id.repo
        )));
    }
    let snapshot = folder.join("snapshots").join(&commit);
    if !snapshot.join(checkpoint::CONFIG_FILE).is_file() {
        return Err(Error::Hub(format!(
            "{}@{}: the cached snapshot lacks config.json and HF_HUB_OFFLINE is set",
            id.repo, id.revision
        )));
    }
    Ok(snapshot)
}

fn is_commit_hash(s: &str) -> bool {
    s.len() == 40 && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// A repository path that stays inside its directory: relative, no `..`, no backslashes.
pub fn is_safe_repo_path(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('/')
        && !name.contains('\\')
        && !name.contains('\0')
        && name
            .split('/')
            .all(|p| !p.is_empty() && p != "." && p != "..")
}

/// A progress bar per downloaded file.
struct FileProgress {
    bar: indicatif::ProgressBar,
}

impl FileProgress {
    fn new() -> Self {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg:<40} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        FileProgress { bar }
    }
}

impl Progress for FileProgress {
    fn init(&mut self, size: usize, filename: &str) {
        self.bar.set_length(size as u64);
        self.bar.set_message(filename.to_string());
    }
    fn update(&mut self, size: usize) {
        self.bar.inc(size as u64);
    }
    fn finish(&mut self) {
        self.bar.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_adapter_names_a_hub_base_without_its_revision() {
        let named = |arg: &str| {
            let b = base_model(Path::new(arg));
            (b.name_or_path, b.revision)
        };
        assert_eq!(
            named("org/never-on-disk@v1.2"),
            ("org/never-on-disk".into(), Some("v1.2".into()))
        );
        assert_eq!(
            named("org/never-on-disk"),
            ("org/never-on-disk".into(), None)
        );
        let here = base_model(Path::new("src"));
        assert!(Path::new(&here.name_or_path).is_absolute());
        assert!(here.name_or_path.ends_with("src") && here.revision.is_none());
    }

    #[test]
    fn hub_ids() {
        assert_eq!(
            HubId::parse("org/name@v1"),
            Some(HubId {
                repo: "org/name".into(),
                revision: "v1".into()
            })
        );
        assert_eq!(HubId::parse("org/name").unwrap().revision, "main");
        assert!(HubId::parse("name").is_none());
        assert!(HubId::parse("a/b/c").is_none());
        assert!(HubId::parse("../b").is_none());
        assert!(HubId::parse("org/name@../x").is_none());
    }

    #[test]
    fn safe_paths_and_pickles() {
        assert!(is_safe_repo_path("model.safetensors"));
        assert!(is_safe_repo_path("onnx/model.onnx"));
        assert!(!is_safe_repo_path("../evil"));
        assert!(!is_safe_repo_path("/etc/passwd"));
        assert!(!is_safe_repo_path("a/../../b"));
        assert!(
            is_pickle("pytorch_model.bin")
                && is_pickle("x.ckpt")
                && !is_pickle("model.safetensors")
        );
    }
}
