//! `lethe pull` against a hub on 127.0.0.1 that speaks the resolve protocol, started by the test
//! itself: a sharded repository with two revisions, a private repository, a tampered file,
//! pickle-only weights, a hostile file name, and offline use of the cache with the server gone.

mod common;

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

const TOKEN: &str = "hf_test_token";

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[derive(Clone)]
struct Revision {
    commit: String,
    files: BTreeMap<String, Vec<u8>>,
    /// Files served with bytes that differ from what their ETag promises.
    tampered: Vec<String>,
}

#[derive(Clone)]
struct RepoSpec {
    private: bool,
    /// revision name (branch or commit) → content.
    revisions: BTreeMap<String, Revision>,
}

struct TestHub {
    addr: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TestHub {
    fn start(repos: BTreeMap<String, RepoSpec>) -> TestHub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let repos = Arc::new(repos);
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(s) = stream {
                    // One thread a connection, each bounded in time, so that no client can
                    // stall the others.
                    let repos = repos.clone();
                    std::thread::spawn(move || {
                        let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(5)));
                        let _ = serve(s, &repos);
                    });
                }
            }
        });
        TestHub {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.addr.trim_start_matches("http://"));
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for TestHub {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn respond(
    s: &mut TcpStream,
    status: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    s.flush()
}

/// Serves the requests of one connection (clients may keep it alive) until it closes.
fn serve(s: TcpStream, repos: &BTreeMap<String, RepoSpec>) -> std::io::Result<()> {
    let mut reader = BufReader::new(s.try_clone()?);
    let mut out = s;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut words = line.split_whitespace();
        let method = words.next().unwrap_or("GET").to_string();
        let target = words.next().unwrap_or("/");
        // Query strings (Python's client adds some) do not change the answer here.
        let path = target.split('?').next().unwrap_or("/").to_string();
        let mut range = None;
        let mut authorized = false;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 || h == "\r\n" {
                break;
            }
            let lower = h.to_lowercase();
            if let Some(v) = lower.strip_prefix("range: bytes=") {
                let (a, b) = v.trim().split_once('-').unwrap_or(("0", ""));
                range = Some((a.parse::<usize>().unwrap_or(0), b.parse::<usize>().ok()));
            }
            if lower.starts_with("authorization:") && h.contains(TOKEN) {
                authorized = true;
            }
        }
        answer(&mut out, &method, &path, range, authorized, repos)?;
    }
}

fn answer(
    s: &mut TcpStream,
    method: &str,
    path: &str,
    range: Option<(usize, Option<usize>)>,
    authorized: bool,
    repos: &BTreeMap<String, RepoSpec>,
) -> std::io::Result<()> {
    let not_found = |s: &mut TcpStream| respond(s, "404 Not Found", &[], b"not found");
    // /api/models/{org}/{name}/revision/{rev} and …/tree/{rev} (Python's client lists files so)
    if let Some(rest) = path.strip_prefix("/api/models/") {
        let parts: Vec<&str> = rest.splitn(4, '/').collect();
        if parts.len() == 4 && parts[2] == "tree" {
            let repo = format!("{}/{}", parts[0], parts[1]);
            let Some(spec) = repos.get(&repo) else {
                return not_found(s);
            };
            if spec.private && !authorized {
                return respond(s, "401 Unauthorized", &[], b"unauthorized");
            }
            let Some(rev) = find_revision(spec, parts[3]) else {
                return not_found(s);
            };
            let entries: Vec<serde_json::Value> = rev
                .files
                .iter()
                .map(|(f, bytes)| {
                    let mut e = serde_json::json!({
                        "type": "file", "path": f, "size": bytes.len(), "oid": &sha256(bytes)[..40],
                    });
                    if f.ends_with(".safetensors") {
                        e["lfs"] = serde_json::json!({"oid": sha256(bytes), "size": bytes.len(), "pointerSize": 134});
                    }
                    e
                })
                .collect();
            let body = serde_json::Value::Array(entries).to_string();
            return respond(
                s,
                "200 OK",
                &[("Content-Type".into(), "application/json".into())],
                body.as_bytes(),
            );
        }
        if parts.len() == 4 && parts[2] == "revision" {
            let repo = format!("{}/{}", parts[0], parts[1]);
            let Some(spec) = repos.get(&repo) else {
                return not_found(s);
            };
            if spec.private && !authorized {
                return respond(s, "401 Unauthorized", &[], b"unauthorized");
            }
            let Some(rev) = find_revision(spec, parts[3]) else {
                return not_found(s);
            };
            let siblings: Vec<serde_json::Value> = rev
                .files
                .keys()
                .map(|f| serde_json::json!({"rfilename": f}))
                .collect();
            let body = serde_json::json!({"id": repo, "private": spec.private, "sha": rev.commit, "siblings": siblings}).to_string();
            return respond(
                s,
                "200 OK",
                &[("Content-Type".into(), "application/json".into())],
                body.as_bytes(),
            );
        }
        return not_found(s);
    }
    // /{org}/{name}/resolve/{rev}/{file}
    let parts: Vec<&str> = path.trim_start_matches('/').splitn(5, '/').collect();
    if parts.len() == 5 && parts[2] == "resolve" {
        let repo = format!("{}/{}", parts[0], parts[1]);
        let Some(spec) = repos.get(&repo) else {
            return not_found(s);
        };
        if spec.private && !authorized {
            return respond(s, "401 Unauthorized", &[], b"unauthorized");
        }
        let Some(rev) = find_revision(spec, parts[3]) else {
            return not_found(s);
        };
        let Some(content) = rev.files.get(parts[4]) else {
            return not_found(s);
        };
        let lfs = parts[4].ends_with(".safetensors");
        // LFS files carry their SHA-256 as ETag; others a git-style 40-hex id.
        let etag = if repo == "lethe-test/bad-etag" {
            // A server trying to make the client write outside its cache.
            "../../../escaped".to_string()
        } else if lfs {
            sha256(content)
        } else {
            sha256(content)[..40].to_string()
        };
        let mut served = content.clone();
        if rev.tampered.iter().any(|t| t == parts[4]) {
            let last = served.len() - 1;
            served[last] ^= 0xFF;
        }
        let (start, end) = match range {
            Some((a, Some(b))) => (a.min(served.len()), (b + 1).min(served.len())),
            Some((a, None)) => (a.min(served.len()), served.len()),
            None => (0, served.len()),
        };
        let body = &served[start..end.max(start)];
        let mut headers = vec![
            ("ETag".to_string(), format!("\"{etag}\"")),
            ("X-Repo-Commit".to_string(), rev.commit.clone()),
        ];
        if method == "HEAD" {
            // Headers only, with the whole file's length (as the hub answers HEAD).
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n{}\r\n",
                served.len(),
                headers
                    .iter()
                    .map(|(k, v)| format!("{k}: {v}\r\n"))
                    .collect::<String>()
            );
            s.write_all(head.as_bytes())?;
            return s.flush();
        }
        if range.is_none() {
            return respond(s, "200 OK", &headers, body);
        }
        headers.push((
            "Content-Range".to_string(),
            format!("bytes {start}-{}/{}", end.max(start + 1) - 1, served.len()),
        ));
        return respond(s, "206 Partial Content", &headers, body);
    }
    not_found(s)
}

/// A revision by branch name or by commit id.
fn find_revision<'a>(spec: &'a RepoSpec, rev: &str) -> Option<&'a Revision> {
    spec.revisions
        .get(rev)
        .or_else(|| spec.revisions.values().find(|r| r.commit == rev))
}

/// A tiny sharded checkpoint: config.json, an index and two shards.
fn sharded_checkpoint(seed: u64) -> BTreeMap<String, Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    common::write_model(
        dir.path(),
        &common::mlp_config([1, 4, 4], 3),
        seed,
        safetensors::Dtype::F32,
    );
    let bytes = std::fs::read(dir.path().join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names = st.names();
    names.sort();
    let (a, b) = names.split_at(names.len() / 2);
    let mut files = BTreeMap::new();
    let mut weight_map = serde_json::Map::new();
    for (i, part) in [a, b].iter().enumerate() {
        let file = format!("model-0000{}-of-00002.safetensors", i + 1);
        let views: Vec<_> = part.iter().map(|n| (*n, st.tensor(n).unwrap())).collect();
        files.insert(file.clone(), safetensors::serialize(views, None).unwrap());
        for n in part.iter() {
            weight_map.insert(n.to_string(), serde_json::Value::String(file.clone()));
        }
    }
    files.insert(
        "model.safetensors.index.json".into(),
        serde_json::json!({"metadata": {}, "weight_map": weight_map})
            .to_string()
            .into_bytes(),
    );
    files.insert(
        "config.json".into(),
        std::fs::read(dir.path().join("config.json")).unwrap(),
    );
    files
}

fn single_file_checkpoint(seed: u64) -> BTreeMap<String, Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    common::write_model(
        dir.path(),
        &common::mlp_config([1, 4, 4], 3),
        seed,
        safetensors::Dtype::F32,
    );
    ["config.json", "model.safetensors"]
        .iter()
        .map(|f| (f.to_string(), std::fs::read(dir.path().join(f)).unwrap()))
        .collect()
}

fn commit(n: u8) -> String {
    format!("{:040x}", n as u128 * 0x1111_1111_1111_1111u128)
}

fn repos() -> BTreeMap<String, RepoSpec> {
    let rev = |c: u8, files: BTreeMap<String, Vec<u8>>, tampered: &[&str]| Revision {
        commit: commit(c),
        files,
        tampered: tampered.iter().map(|s| s.to_string()).collect(),
    };
    let mut repos = BTreeMap::new();
    let mut sharded = BTreeMap::new();
    sharded.insert("main".to_string(), rev(1, sharded_checkpoint(1), &[]));
    sharded.insert("v1".to_string(), rev(2, sharded_checkpoint(2), &[]));
    repos.insert(
        "lethe-test/sharded".into(),
        RepoSpec {
            private: false,
            revisions: sharded,
        },
    );
    repos.insert(
        "lethe-test/private".into(),
        RepoSpec {
            private: true,
            revisions: BTreeMap::from([(
                "main".to_string(),
                rev(3, single_file_checkpoint(3), &[]),
            )]),
        },
    );
    repos.insert(
        "lethe-test/tampered".into(),
        RepoSpec {
            private: false,
            revisions: BTreeMap::from([(
                "main".to_string(),
                rev(4, single_file_checkpoint(4), &["model.safetensors"]),
            )]),
        },
    );
    let mut pickle = BTreeMap::new();
    pickle.insert(
        "config.json".to_string(),
        single_file_checkpoint(5)["config.json"].clone(),
    );
    pickle.insert(
        "pytorch_model.bin".to_string(),
        b"\x80\x04not really a pickle".to_vec(),
    );
    repos.insert(
        "lethe-test/pickle".into(),
        RepoSpec {
            private: false,
            revisions: BTreeMap::from([("main".to_string(), rev(5, pickle, &[]))]),
        },
    );
    let mut hostile = single_file_checkpoint(6);
    hostile.insert("../../escape.txt".to_string(), b"x".to_vec());
    repos.insert(
        "lethe-test/hostile".into(),
        RepoSpec {
            private: false,
            revisions: BTreeMap::from([("main".to_string(), rev(6, hostile, &[]))]),
        },
    );
    repos.insert(
        "lethe-test/bad-etag".into(),
        RepoSpec {
            private: false,
            revisions: BTreeMap::from([(
                "main".to_string(),
                rev(7, single_file_checkpoint(7), &[]),
            )]),
        },
    );
    repos
}

fn lethe(args: &[&str], endpoint: &str, home: &Path, extra_env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lethe"));
    c.args(args)
        .env("HF_ENDPOINT", endpoint)
        .env("HF_HOME", home)
        .env_remove("HF_TOKEN")
        .env_remove("HF_TOKEN_PATH")
        .env_remove("HF_HUB_CACHE")
        .env_remove("HF_HUB_OFFLINE");
    for (k, v) in extra_env {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// `lethe pull REPO -q` against `hub`, with `home` as HF_HOME.
fn pull(hub: &TestHub, home: &Path, repo: &str, extra_env: &[(&str, &str)]) -> Output {
    lethe(&["pull", repo, "-q"], &hub.addr, home, extra_env)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn pulls_a_sharded_repository_into_the_standard_cache_and_works_offline_after() {
    let mut hub = TestHub::start(repos());
    let home = tempfile::tempdir().unwrap();
    let o = pull(&hub, home.path(), "lethe-test/sharded", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let snapshot = PathBuf::from(stdout(&o));
    let folder = home.path().join("hub/models--lethe-test--sharded");
    assert_eq!(snapshot, folder.join("snapshots").join(commit(1)));
    assert_eq!(
        std::fs::read_to_string(folder.join("refs/main"))
            .unwrap()
            .trim(),
        commit(1)
    );
    for f in [
        "config.json",
        "model.safetensors.index.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ] {
        assert!(snapshot.join(f).is_file(), "{f} missing");
        // Snapshot entries point into blobs/, as in Python's huggingface_hub.
        assert!(std::fs::symlink_metadata(snapshot.join(f))
            .unwrap()
            .file_type()
            .is_symlink());
    }
    let shard = std::fs::read(snapshot.join("model-00001-of-00002.safetensors")).unwrap();
    assert!(folder.join("blobs").join(sha256(&shard)).is_file());

    // The second revision is another commit with other weights.
    let o = pull(&hub, home.path(), "lethe-test/sharded@v1", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v1 = PathBuf::from(stdout(&o));
    assert_eq!(v1, folder.join("snapshots").join(commit(2)));
    assert_ne!(
        std::fs::read(v1.join("model-00001-of-00002.safetensors")).unwrap(),
        shard
    );

    // A hub id works wherever a model does.
    let o = lethe(
        &[
            "export",
            "lethe-test/sharded",
            "--out",
            home.path().join("m.onnx").to_str().unwrap(),
            "-q",
        ],
        &hub.addr,
        home.path(),
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));

    // With the server gone, the cache still serves both revisions offline.
    hub.shutdown();
    let offline = [("HF_HUB_OFFLINE", "1")];
    let o = pull(&hub, home.path(), "lethe-test/sharded", &offline);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(PathBuf::from(stdout(&o)), snapshot);
    let o = pull(&hub, home.path(), "lethe-test/sharded@v1", &offline);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = lethe(
        &[
            "export",
            "lethe-test/sharded",
            "--out",
            home.path().join("m2.onnx").to_str().unwrap(),
            "-q",
        ],
        &hub.addr,
        home.path(),
        &offline,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // And says so clearly when something was never pulled.
    let o = pull(&hub, home.path(), "lethe-test/private", &offline);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not in the cache"), "{}", stderr(&o));
    // Online without a server: a clear error, not a hang or a panic.
    let o = pull(&hub, home.path(), "lethe-test/sharded", &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot reach"), "{}", stderr(&o));
}

/// Runs Python with huggingface_hub (installed by .ci/run) against the same cache and hub.
fn python(code: &str, endpoint: &str, home: &Path, extra_env: &[(&str, &str)]) -> Output {
    let mut c = Command::new("python3");
    c.args(["-c", code])
        .env("HF_ENDPOINT", endpoint)
        .env("HF_HOME", home)
        .env("HF_HUB_DISABLE_TELEMETRY", "1")
        .env("HF_HUB_DISABLE_XET", "1")
        .env_remove("HF_TOKEN")
        .env_remove("HF_HUB_CACHE")
        .env_remove("HF_HUB_OFFLINE");
    for (k, v) in extra_env {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("No module named 'huggingface_hub'"),
        "python3 lacks huggingface_hub: pip install huggingface_hub (.ci/run does)"
    );
    o
}

#[test]
fn the_cache_is_shared_with_pythons_huggingface_hub_both_ways() {
    let hub = TestHub::start(repos());
    let home = tempfile::tempdir().unwrap();
    // lethe pulls, Python finds it offline.
    let o = pull(&hub, home.path(), "lethe-test/sharded", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ours = stdout(&o);
    let o = python(
        "from huggingface_hub import snapshot_download; print(snapshot_download('lethe-test/sharded', local_files_only=True))",
        &hub.addr, home.path(), &[("HF_HUB_OFFLINE", "1")],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), ours);
    // Python pulls another revision, lethe finds it offline.
    let o = python(
        "from huggingface_hub import snapshot_download; print(snapshot_download('lethe-test/sharded', revision='v1'))",
        &hub.addr, home.path(), &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let theirs = stdout(&o);
    let o = pull(
        &hub,
        home.path(),
        "lethe-test/sharded@v1",
        &[("HF_HUB_OFFLINE", "1")],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), theirs);
}

#[test]
fn a_job_file_may_name_a_hub_model() {
    let hub = TestHub::start(repos());
    let home = tempfile::tempdir().unwrap();
    common::write_dataset(&home.path().join("data.safetensors"), 30, [1, 4, 4], 3, 1);
    let job = home.path().join("job.toml");
    std::fs::write(
        &job,
        "[model]\nsource = \"lethe-test/sharded@v1\"\n[data]\ntrain = \"data.safetensors\"\n[forget]\nclass = \"1\"\n[output]\ndir = \"out\"\n",
    )
    .unwrap();
    let o = lethe(
        &["run", job.to_str().unwrap(), "--dry-run"],
        &hub.addr,
        home.path(),
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let plan = stdout(&o);
    assert!(
        plan.contains("source = \"lethe-test/sharded@v1\""),
        "{plan}"
    );
    // Provenance hashes the pulled snapshot's files.
    assert!(plan.contains(&commit(2)), "{plan}");
}

#[test]
fn hf_hub_cache_overrides_hf_home() {
    let hub = TestHub::start(repos());
    let home = tempfile::tempdir().unwrap();
    let cache = home.path().join("elsewhere");
    let o = pull(
        &hub,
        home.path(),
        "lethe-test/sharded",
        &[("HF_HUB_CACHE", cache.to_str().unwrap())],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with(cache.to_str().unwrap()));
}

#[test]
fn a_private_repository_needs_a_token() {
    let hub = TestHub::start(repos());
    let home = tempfile::tempdir().unwrap();
    let o = pull(&hub, home.path(), "lethe-test/private", &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("HF_TOKEN"), "{}", stderr(&o));
    let o = pull(
        &hub,
        home.path(),
        "lethe-test/private",
        &[("HF_TOKEN", TOKEN)],
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_file_that_does_not_match_its_etag_is_rejected_and_discarded() {
    let hub = TestHub::start(repos());
    let home = tempfile::tempdir().unwrap();
    let o = pull(&hub, home.path(), "lethe-test/tampered", &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("does not match the hub's SHA-256"),
        "{}",
        stderr(&o)
    );
    let snapshot = home
        .path()
        .join("hub/models--lethe-test--tampered/snapshots")
        .join(commit(4));
    assert!(!snapshot.join("model.safetensors").exists());
    let blobs = home.path().join("hub/models--lethe-test--tampered/blobs");
    let leftovers: Vec<String> = std::fs::read_dir(&blobs)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    // Only config.json's blob (a 40-hex git id) may remain, besides hf-hub's lock files.
    assert!(
        leftovers
            .iter()
            .all(|f| f.ends_with(".lock") || f.len() == 40),
        "bad blob kept: {leftovers:?}"
    );
}

#[test]
fn pickle_weights_and_escaping_names_are_refused() {
    let hub = TestHub::start(repos());
    let home = tempfile::tempdir().unwrap();
    let o = pull(&hub, home.path(), "lethe-test/pickle", &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("never executes code"), "{}", stderr(&o));
    let o = pull(&hub, home.path(), "lethe-test/hostile", &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("escape"), "{}", stderr(&o));
    assert!(!home.path().join("escape.txt").exists());
    let o = pull(&hub, home.path(), "lethe-test/bad-etag", &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("malformed ETag"), "{}", stderr(&o));
    assert!(!home.path().join("escaped").exists() && !home.path().join("hub/escaped").exists());
}

/// What a terminal shows of `lethe ARGS` (its stderr: stdout goes to a file), run under
/// `script`, which gives it a terminal: progress bars are drawn on terminals only.
fn on_a_terminal(args: &[&str], hub: &TestHub, home: &Path) -> String {
    on_a_terminal_with(args, hub, home, &[])
}

fn on_a_terminal_with(
    args: &[&str],
    hub: &TestHub,
    home: &Path,
    extra_env: &[(&str, &str)],
) -> String {
    let mut line = format!("'{}'", env!("CARGO_BIN_EXE_lethe"));
    for a in args {
        line.push_str(&format!(" '{a}'"));
    }
    line.push_str(&format!(" > '{}'", home.join("stdout.txt").display()));
    let mut c = Command::new("script");
    c.args(["-qec", &line, "/dev/null"])
        .env("HF_ENDPOINT", &hub.addr)
        .env("HF_HOME", home)
        .env_remove("HF_TOKEN")
        .env_remove("HF_HUB_CACHE")
        .env_remove("HF_HUB_OFFLINE")
        .env_remove("HF_HUB_DISABLE_PROGRESS_BARS");
    for (k, v) in extra_env {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn quiet_runs_that_pull_show_nothing_on_a_terminal() {
    let hub = TestHub::start(repos());
    let run = |quiet: bool| {
        let home = tempfile::tempdir().unwrap();
        common::write_dataset(&home.path().join("data.safetensors"), 30, [1, 4, 4], 3, 1);
        let data = home.path().join("data.safetensors");
        let mut args = vec![
            "unlearn",
            "lethe-test/sharded",
            "--data",
            data.to_str().unwrap(),
            "--forget-class",
            "1",
            "--steps",
            "2",
        ];
        if quiet {
            args.push("-q");
        }
        let shown = on_a_terminal(&args, &hub, home.path());
        let table = std::fs::read_to_string(home.path().join("stdout.txt")).unwrap();
        assert!(table.contains("UA %"), "the result goes to stdout: {table}");
        shown
    };
    // Without -q the terminal shows the downloads and the run's progress…
    let loud = run(false);
    assert!(
        loud.contains("safetensors"),
        "no download progress shown: {loud:?}"
    );
    // …with -q, nothing at all.
    let quiet = run(true);
    assert_eq!(quiet.trim(), "", "a quiet run printed on stderr");
}

#[test]
fn hf_hub_disable_progress_bars_hides_the_downloads_on_a_terminal() {
    let hub = TestHub::start(repos());
    let pulled = |extra_env: &[(&str, &str)]| {
        let home = tempfile::tempdir().unwrap();
        on_a_terminal_with(
            &["pull", "lethe-test/sharded"],
            &hub,
            home.path(),
            extra_env,
        )
    };
    assert!(pulled(&[]).contains("safetensors"), "no download progress");
    let hidden = pulled(&[("HF_HUB_DISABLE_PROGRESS_BARS", "1")]);
    assert!(!hidden.contains("safetensors"), "{hidden:?}");
}

#[test]
fn without_hf_home_the_cache_follows_xdg_cache_home() {
    let hub = TestHub::start(repos());
    let xdg = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_lethe"))
        .args(["pull", "lethe-test/sharded", "-q"])
        .env("HF_ENDPOINT", &hub.addr)
        .env("XDG_CACHE_HOME", xdg.path())
        .env("HOME", xdg.path().join("not-here"))
        .env_remove("HF_HOME")
        .env_remove("HF_TOKEN")
        .env_remove("HF_TOKEN_PATH")
        .env_remove("HF_HUB_CACHE")
        .env_remove("HF_HUB_OFFLINE")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let expected = xdg.path().join("huggingface/hub");
    assert!(
        stdout(&o).starts_with(expected.to_str().unwrap()),
        "{}",
        stdout(&o)
    );
}

#[test]
fn the_token_file_is_read_from_hf_home_or_hf_token_path() {
    let hub = TestHub::start(repos());
    let home = tempfile::tempdir().unwrap();
    // A token file in HF_HOME, as `hf auth login` leaves it.
    std::fs::write(home.path().join("token"), format!("{TOKEN}\n")).unwrap();
    let o = pull(&hub, home.path(), "lethe-test/private", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Elsewhere, named by HF_TOKEN_PATH.
    let other = tempfile::tempdir().unwrap();
    let token = other.path().join("my-token");
    std::fs::write(&token, TOKEN).unwrap();
    let o = pull(
        &hub,
        other.path(),
        "lethe-test/private",
        &[("HF_TOKEN_PATH", token.to_str().unwrap())],
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn pull_takes_a_revision_and_include_and_exclude_globs_like_hf_download() {
    let hub = TestHub::start(repos());
    let files = |dir: &str| {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let home = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let mut all = vec!["pull", "lethe-test/sharded", "-q"];
        all.extend_from_slice(args);
        lethe(&all, &hub.addr, home.path(), &[])
    };
    let o = run(&["--revision", "v1", "--include", "*.json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).ends_with(&commit(2)), "{}", stdout(&o));
    assert_eq!(
        files(&stdout(&o)),
        ["config.json", "model.safetensors.index.json"]
    );
    let o = run(&["--exclude", "model-00002-*"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).ends_with(&commit(1)), "{}", stdout(&o));
    assert_eq!(
        files(&stdout(&o)),
        [
            "config.json",
            "model-00001-of-00002.safetensors",
            "model.safetensors.index.json"
        ]
    );
    // Two revisions, or globs that leave nothing: bad usage.
    let o = lethe(
        &["pull", "lethe-test/sharded@main", "--revision", "v1", "-q"],
        &hub.addr,
        home.path(),
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = run(&["--include", "*.gguf"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}
