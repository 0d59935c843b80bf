//! Build script: fetches the browser assets of the two pages the binary
//! serves, each set pinned in its own `package.json` and `package-lock.json`,
//! with `npm ci`, and generates one Rust file per set in `$OUT_DIR` that the
//! page's module includes, so the binary serves them without any network
//! access:
//!
//! | package files | generated | included by |
//! |---|---|---|
//! | `graphiql/` (GraphiQL, React) | `graphiql_assets.rs` | `src/http/playground.rs` |
//! | `dashboard/` (Apache ECharts) | `dashboard_assets.rs` | `src/http/dashboard.rs` |
//!
//! The assets are never committed. When they cannot be fetched (no `npm`, no
//! access to the npm registry, or `UNION360_SKIP_NPM=1`), the build still
//! succeeds: it prints a `cargo:warning` and the generated `MISSING` list
//! makes the page explain what is missing and how to fix it.
//!
//! An install in `$OUT_DIR/<set>-npm` is reused while its package files
//! match the pinned ones, so incremental builds do not run npm again.
//!
//! It also sets `cfg(postgres_tests)` when `TEST_DATABASE_URL` is set, so
//! the tests that need PostgreSQL run then, and are reported as ignored,
//! with the reason, when it is not (they never pass without testing).

use std::env;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::hash::{DefaultHasher, Hasher};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The pinned package files, relative to a set's directory.
const PACKAGE_FILES: [&str; 2] = ["package.json", "package-lock.json"];

/// Longest time `npm ci` may take before it is stopped.
const NPM_TIMEOUT: Duration = Duration::from_secs(300);

/// Written after a successful install; holds the package files it installed.
const STAMP: &str = "union360-installed.stamp";

/// One set of npm packages, installed on its own, and the assets a page
/// serves from it.
struct PackageSet {
    /// The directory (relative to the package root) with the package files;
    /// also names the install directory, `$OUT_DIR/<dir>-npm`.
    dir: &'static str,
    /// What the assets are for, in warnings.
    what: &'static str,
    /// The page that explains missing assets.
    page: &'static str,
    /// The file generated in `$OUT_DIR`.
    generated: &'static str,
    assets: &'static [Asset],
}

/// One asset a page serves: its name under the page's `assets/` path, its
/// content type, and where it may sit inside the npm install (first match wins).
struct Asset {
    name: &'static str,
    content_type: &'static str,
    candidates: &'static [&'static str],
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

const SETS: &[PackageSet] = &[
    PackageSet {
        dir: "graphiql",
        what: "GraphiQL playground",
        page: "/graphiql",
        generated: "graphiql_assets.rs",
        assets: GRAPHIQL_ASSETS,
    },
    PackageSet {
        dir: "dashboard",
        what: "audience dashboard",
        page: "/dashboard",
        generated: "dashboard_assets.rs",
        assets: DASHBOARD_ASSETS,
    },
];

const GRAPHIQL_ASSETS: &[Asset] = &[
    Asset {
        name: "react.production.min.js",
        content_type: JS,
        candidates: &["node_modules/react/umd/react.production.min.js"],
    },
    Asset {
        name: "react-dom.production.min.js",
        content_type: JS,
        candidates: &["node_modules/react-dom/umd/react-dom.production.min.js"],
    },
    Asset {
        name: "graphiql.min.js",
        content_type: JS,
        candidates: &[
            "node_modules/graphiql/graphiql.min.js",
            "node_modules/graphiql/dist/index.umd.js",
        ],
    },
    Asset {
        name: "graphiql.min.css",
        content_type: CSS,
        candidates: &[
            "node_modules/graphiql/graphiql.min.css",
            "node_modules/graphiql/dist/style.css",
        ],
    },
];

const DASHBOARD_ASSETS: &[Asset] = &[Asset {
    name: "echarts.min.js",
    content_type: JS,
    candidates: &["node_modules/echarts/dist/echarts.min.js"],
}];

fn main() {
    for set in SETS {
        for file in PACKAGE_FILES {
            println!("cargo:rerun-if-changed={}/{file}", set.dir);
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=UNION360_SKIP_NPM");
    println!("cargo:rerun-if-env-changed=TEST_DATABASE_URL");
    println!("cargo:rustc-check-cfg=cfg(postgres_tests)");
    if env::var("TEST_DATABASE_URL").is_ok_and(|url| !url.is_empty()) {
        println!("cargo:rustc-cfg=postgres_tests");
    }

    let (Some(manifest_dir), Some(out_dir)) =
        (env::var_os("CARGO_MANIFEST_DIR"), env::var_os("OUT_DIR"))
    else {
        println!("cargo:warning=CARGO_MANIFEST_DIR or OUT_DIR is not set; cannot build");
        std::process::exit(1);
    };
    let manifest_dir = PathBuf::from(manifest_dir);
    let out_dir = PathBuf::from(out_dir);

    for set in SETS {
        let npm_dir = out_dir.join(format!("{}-npm", set.dir));
        let install = install(set, &manifest_dir.join(set.dir), &npm_dir);
        let generated = generate(set, &npm_dir, install.as_ref().err().map(String::as_str));
        // Rewriting identical content would still make cargo recompile the crate.
        let target = out_dir.join(set.generated);
        if fs::read_to_string(&target).is_ok_and(|old| old == generated) {
            continue;
        }
        if let Err(err) = fs::write(&target, generated) {
            println!("cargo:warning=cannot write {}: {err}", set.generated);
            std::process::exit(1);
        }
    }
}

/// Makes `npm_dir/node_modules` hold the packages pinned in `package_dir`,
/// reusing a matching install. Returns why the assets could not be fetched
/// on failure.
fn install(set: &PackageSet, package_dir: &Path, npm_dir: &Path) -> Result<(), String> {
    if env::var("UNION360_SKIP_NPM").is_ok_and(|v| v == "1") {
        return Err("the build ran with UNION360_SKIP_NPM=1".to_owned());
    }

    let mut pinned = Vec::new();
    for file in PACKAGE_FILES {
        let bytes = fs::read(package_dir.join(file))
            .map_err(|e| format!("cannot read {}/{file}: {e}", set.dir))?;
        pinned.push((file, bytes));
    }
    let stamp_content: Vec<u8> = pinned.iter().flat_map(|(_, b)| b.iter().copied()).collect();
    let stamp = npm_dir.join(STAMP);
    if fs::read(&stamp).is_ok_and(|s| s == stamp_content) && all_assets_present(set, npm_dir) {
        return Ok(());
    }

    fs::create_dir_all(npm_dir).map_err(|e| format!("cannot create {}: {e}", npm_dir.display()))?;
    // A stale stamp must not survive a failed install.
    match fs::remove_file(&stamp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot remove {}: {e}", stamp.display())),
    }
    for (file, bytes) in &pinned {
        fs::write(npm_dir.join(file), bytes)
            .map_err(|e| format!("cannot copy {}/{file}: {e}", set.dir))?;
    }

    run_npm_ci(npm_dir)?;
    fs::write(&stamp, stamp_content).map_err(|e| format!("cannot write {}: {e}", stamp.display()))
}

/// Runs `npm ci` in `npm_dir`, logging to `npm-ci.log` there, with a time limit.
fn run_npm_ci(npm_dir: &Path) -> Result<(), String> {
    let log_path = npm_dir.join("npm-ci.log");
    let log = File::create(&log_path).map_err(|e| format!("cannot create npm-ci.log: {e}"))?;
    let log_err = log
        .try_clone()
        .map_err(|e| format!("cannot open npm-ci.log: {e}"))?;
    let npm = if cfg!(windows) { "npm.cmd" } else { "npm" };
    let mut child = Command::new(npm)
        .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund"])
        .current_dir(npm_dir)
        .env("npm_config_update_notifier", "false")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => "`npm` was not found on PATH".to_owned(),
            _ => format!("`npm` could not be started: {e}"),
        })?;

    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > NPM_TIMEOUT => {
                // Best effort: the process may have exited in the meantime.
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "`npm ci` did not finish within {} s",
                    NPM_TIMEOUT.as_secs()
                ));
            }
            Ok(None) => thread::sleep(Duration::from_millis(200)),
            Err(e) => return Err(format!("waiting for `npm ci` failed: {e}")),
        }
    };
    if status.success() {
        return Ok(());
    }
    let detail = fs::read_to_string(&log_path)
        .ok()
        .and_then(|log| first_error_line(&log))
        .map(|line| format!(": {line}"))
        .unwrap_or_default();
    Err(format!("`npm ci` failed ({status}){detail}"))
}

/// The first line of npm's output that reports an error, with URLs removed
/// (they only name the configured registry and make the message long).
fn first_error_line(log: &str) -> Option<String> {
    let line = log
        .lines()
        .find(|l| l.starts_with("npm error") || l.starts_with("npm ERR!"))?;
    let words: Vec<&str> = line
        .split_whitespace()
        .map(|w| if w.contains("://") { "<url>" } else { w })
        .collect();
    Some(words.join(" "))
}

/// The first existing candidate path of `asset` inside `npm_dir`.
fn locate(npm_dir: &Path, asset: &Asset) -> Option<PathBuf> {
    asset
        .candidates
        .iter()
        .map(|c| npm_dir.join(c))
        .find(|p| p.is_file())
}

fn all_assets_present(set: &PackageSet, npm_dir: &Path) -> bool {
    set.assets.iter().all(|a| locate(npm_dir, a).is_some())
}

/// Renders `set.generated`. `failure` is why the install failed, if it did.
fn generate(set: &PackageSet, npm_dir: &Path, failure: Option<&str>) -> String {
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for asset in set.assets {
        match failure.is_none().then(|| locate(npm_dir, asset)).flatten() {
            Some(path) => found.push((asset, path)),
            None => missing.push(asset.name),
        }
    }
    let reason = match failure {
        Some(reason) => reason.to_owned(),
        None if missing.is_empty() => String::new(),
        None => format!(
            "the npm packages installed, but these files were not in them: {}",
            missing.join(", ")
        ),
    };
    if !missing.is_empty() {
        // The log path stays out of `reason`, which the binary shows to users.
        let log = npm_dir.join("npm-ci.log");
        let log_note = if reason.starts_with("`npm ci`") && log.is_file() {
            format!(" (npm output: {})", log.display())
        } else {
            String::new()
        };
        let mut what = set.what.to_owned();
        what[..1].make_ascii_uppercase();
        println!(
            "cargo:warning={what} assets are missing ({}): {reason}{log_note}. \
             The binary builds and serves GraphQL, but {} will only explain this. \
             Make `npm` and the npm registry reachable, then rebuild (e.g. `touch build.rs`).",
            missing.join(", "),
            set.page,
        );
    }

    // A fingerprint of the embedded files, used to bust browser caches.
    let mut hasher = DefaultHasher::new();
    for (asset, path) in &found {
        hasher.write(asset.name.as_bytes());
        if let Ok(meta) = fs::metadata(path) {
            hasher.write_u64(meta.len());
        }
        if let Ok(bytes) = fs::read(path) {
            hasher.write(&bytes);
        }
    }

    let mut out = String::new();
    let _ = writeln!(
        out,
        "// Generated by build.rs from {}/package-lock.json. Do not edit.\n",
        set.dir
    );
    let _ = writeln!(
        out,
        "/// Embedded {} assets: (file name, content type, bytes).",
        set.what
    );
    out.push_str("pub static ASSETS: &[(&str, &str, &[u8])] = &[\n");
    for (asset, path) in &found {
        let path = path.to_string_lossy();
        let _ = writeln!(
            out,
            "    ({:?}, {:?}, include_bytes!({:?})),",
            asset.name, asset.content_type, path
        );
    }
    out.push_str("];\n\n");
    out.push_str("/// Names of the assets that could not be fetched at build time.\n");
    out.push_str("pub static MISSING: &[&str] = &[\n");
    for name in &missing {
        let _ = writeln!(out, "    {name:?},");
    }
    out.push_str("];\n\n");
    out.push_str("/// Why the assets in `MISSING` could not be fetched (empty when none are).\n");
    let _ = writeln!(out, "pub static MISSING_REASON: &str = {reason:?};\n");
    out.push_str("/// Fingerprint of the embedded assets, for cache-busting asset URLs.\n");
    let _ = writeln!(
        out,
        "pub static VERSION: &str = \"{:016x}\";",
        hasher.finish()
    );
    out
}
