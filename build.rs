//! Builds the preload library (release) and embeds it in the `memtrace`
//! binary, so an installed `memtrace` needs no file beside it.
//!
//! `MEMTRACE_PRELOAD_SO=/path/lib.so` embeds a prebuilt library instead.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=MEMTRACE_PRELOAD_SO");
    for dir in [
        "crates/preload",
        "crates/recorder",
        "crates/format",
        "crates/unwind",
        "crates/counters",
    ] {
        println!("cargo:rerun-if-changed={dir}/src");
        println!("cargo:rerun-if-changed={dir}/Cargo.toml");
    }
    println!("cargo:rerun-if-changed=Cargo.lock");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let embedded = out_dir.join("libmemtrace_preload.so");

    let built = match env::var_os("MEMTRACE_PRELOAD_SO") {
        Some(path) => PathBuf::from(path),
        None => {
            let manifest_dir =
                PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
            let target_dir = out_dir.join("preload-target");
            let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let status = Command::new(cargo)
                .args([
                    "build",
                    "--release",
                    "--package",
                    "memtrace-preload",
                    "--target-dir",
                ])
                .arg(&target_dir)
                .arg("--manifest-path")
                .arg(manifest_dir.join("Cargo.toml"))
                .env_remove("RUSTC_WORKSPACE_WRAPPER")
                .env_remove("RUSTC_WRAPPER")
                .env_remove("CARGO_TARGET_DIR")
                .env_remove("CARGO_BUILD_TARGET_DIR")
                .status()
                .expect("cannot run cargo to build the preload library");
            assert!(status.success(), "building memtrace-preload failed");
            target_dir.join("release/libmemtrace_preload.so")
        }
    };
    let bytes =
        std::fs::read(&built).unwrap_or_else(|e| panic!("cannot read {}: {e}", built.display()));
    std::fs::write(&embedded, &bytes)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", embedded.display()));
    // The library's name in the cache carries its content hash, computed
    // here once rather than at every `memtrace run` (20 MB hashed bit by bit
    // took 0.13 s of each run).
    println!(
        "cargo:rustc-env=MEMTRACE_PRELOAD_HASH={:016x}",
        fnv1a(&bytes)
    );
}

/// 64-bit FNV-1a: a content hash for naming, not for security.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
